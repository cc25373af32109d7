/* winograd.c: 3x3 stride-1 pad-1 convolution by Winograd F(2x2, 3x3)
 * (Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks", 2015),
 * forward and backward, and F(4x4, 3x3), forward only (below the F(2x2)
 * description). See winograd.h; conv.c dispatches here.
 *
 * Shape letters as in conv.h (N, C, H, W, F); the output is (N, F, H, W).
 *
 * Tiles. The output is cut into 2x2 tiles, TH = ceil(H/2) rows by
 * TW = ceil(W/2) columns of them per image. Tile (n, th, tw) writes output
 * rows 2th, 2th+1 and columns 2tw, 2tw+1 (those inside the image) and reads
 * the 4x4 input window d of rows 2th-1 .. 2th+2, columns 2tw-1 .. 2tw+2 (zero
 * outside the image: that is the padding of 1). Per input channel c and
 * output channel f, with g = weight[f, c] (3x3):
 *
 *   U = G g G^T      G   = [ 1    0    0  ]     (4x3)
 *                          [ 1/2  1/2  1/2]
 *                          [ 1/2 -1/2  1/2]
 *                          [ 0    0    1  ]
 *   V = B^T d B      B^T = [ 1  0 -1  0 ]       (4x4)
 *                          [ 0  1  1  0 ]
 *                          [ 0 -1  1  0 ]
 *                          [ 0  1  0 -1 ]
 *   y = A^T m A      A^T = [ 1  1  1  0 ]       (2x4)
 *                          [ 0  1 -1 -1 ]
 *   with m = sum over c of U (.) V  (elementwise over the 16 elements)
 *
 * so that y (2x2) is exactly the correlation of d with g (16 multiplies per
 * (f, c, tile) instead of 36). Element e = 4i + j of the 4x4 matrices is
 * independent of the others, so the sum over c is 16 matrix products, with
 * the Q tiles of a batch (or of a chunk of it) as rows:
 *
 *   M[e] (Q, F) = V[e] (Q, C) @ U[e] (C, F)        e = 0 .. 15
 *
 * Backward is the exact adjoint, with dYhat = A dy A^T (4x4) per (f, tile)
 * of the 2x2 tile dy of dout (zero past the image edge):
 *
 *   dU[e] (C, F)  += V[e]^T (C, Q) @ dYhat[e] (Q, F)
 *   dweight[f, c] += G^T dU G                      (3x3)
 *   dV[e] (Q, C)   = dYhat[e] (Q, F) @ U[e]^T (F, C)
 *   din           += B dV B^T (4x4) added onto each tile's input window
 *                    (windows overlap by 2 rows / columns; padding dropped)
 *
 * din this way reuses dYhat and costs less than the alternative, a forward
 * Winograd conv of dout with the flipped weights (its own transforms of dout
 * and of the output): measured, dV and its transforms take 55-95% of the
 * time of such a conv on the UNet's shapes.
 *
 * Layout. The transformed tiles are channels-last, tile-major: V (16, Q, C),
 * M and dYhat (16, Q, F), U and dU (16, C, F) (backward keeps U as U^T,
 * (16, F, C), so that dV too is a plain NN product: OpenBLAS ran the NT one
 * about 1.5x slower on these shapes). Every transform then is a
 * loop over a contiguous run of channels, vectorized whatever the image
 * width, and every product is a plain row-major GEMM (gemm_tile.c's
 * kernels, NN or TN). To get there, the image rows a run of tiles reads
 * are first transposed to channels-last ("staged": X (rows, W, C) for the input, Y (rows, W, F) for dout), and outputs are
 * transposed back from a channels-last stage. A tile finds its 4x4 window (or
 * 2x2 output) through a table of 16 (or 4) pointers to channel vectors; past
 * the image edge they point at a row of zeros (reads) or at a scratch "sink"
 * row (writes), so edge tiles take the same code as the others.
 *
 * F(4x4, 3x3), forward: 4x4 output tiles (TH = ceil(H/4) by TW = ceil(W/4)),
 * each reading the 6x6 window of rows 4th-1 .. 4th+4, columns 4tw-1 .. 4tw+4,
 * 36 GEMMs per chunk instead of 16 (2.25 multiplies per output instead of 4),
 * all else as above. Points 0, 1, -1, 1/2, -2 and infinity:
 *
 *   A^T = [ 1  1  1  1     1  0 ]      G = [  1      0      0    ]
 *         [ 0  1 -1  1/2  -2  0 ]          [  1/3    1/3    1/3  ]
 *         [ 0  1  1  1/4   4  0 ]          [ -1/3    1/3   -1/3  ]
 *         [ 0  1 -1  1/8  -8  1 ]          [ -16/15 -8/15  -4/15 ]
 *                                          [  1/15  -2/15   4/15 ]
 *   B^T = [ 1 -3/2 -2    3/2  1    0 ]     [  0      0      1    ]
 *         [ 0 -1    1/2  5/2  1    0 ]
 *         [ 0  1   -5/2  1/2  1    0 ]
 *         [ 0 -2   -1    2    1    0 ]
 *         [ 0  1/2 -1   -1/2  1    0 ]
 *         [ 0  1   -3/2 -2    3/2  1 ]
 *
 * (A^T and B^T exact in float; U = G g G^T is formed in double and rounded
 * once.) Lavin's points 0, +-1, +-2 (B^T rows [4 0 -5 0 1 0], ...) and the
 * reciprocal set 0, +-1, +-1/2 both round 2.5-3x worse: simulated in float32
 * (numpy), max-norm relative error against float64, 28x28 C = 32 .. 192,
 * F(2x2) 2.5e-7 .. 6e-7, these points 1.2e-6 .. 3.6e-6, Lavin's 3e-6 ..
 * 1.1e-5 (the same with inputs SiLU(N(0, 1)) or N(0, 1)). Measured here
 * (tests/test_conv.c, the UNet's shapes): 1.4e-6 .. 3.0e-6.
 *
 * Chunks. The tile rows of the batch, r = n*TH + th, are cut into chunks of
 * RC tile rows (a chunk may span images: its "segments" are its runs of tile
 * rows within one image, staged one at a time). RC is sized so that V and
 * M/dYhat of a chunk, 16*(C+F)*RC*TW floats, stay within CHUNK_FLOATS (L2):
 * the transforms write them and the GEMMs read them back from cache.
 *
 * Threading (T threads, T = 1 runs without a parallel region). Each thread
 * has its own chunk buffers (V, M/dYhat, the stages) and, in backward, its
 * own dU partial:
 *   forward:  chunks dealt out dynamically; a chunk's result does not depend
 *             on which thread computes it;
 *   backward: thread t owns the whole images [N*t/T, N*(t+1)/T) and runs their
 *             chunks in order (din windows overlap across tile rows, so two
 *             threads never add into the same image); then dweight +=
 *             G^T (dU_0 + dU_1 + ... + dU_{T-1}) G, summed in thread order.
 * Results are bit-for-bit reproducible for a given T.
 */
#include "nn/winograd.h"

#include <omp.h>
#include <string.h>
#ifdef __FMA__
#include <immintrin.h>
#endif

#include "core/util.h"
#include "nn/bf16.h"
#include "nn/gemm_tile.h"
#include "nn/simd.h"

#define NE 16  /* elements of a transformed F(2x2) tile (4x4), e = 4i + j */
#define NE4 36 /* elements of a transformed F(4x4) tile (6x6), e = 6i + j */

/* Per-thread floats of V plus M (or dYhat) of one chunk: 512 KB, half of an
 * L2 (1 MB a core on the Zen 5 EPYC here). Measured on the UNet's convs
 * (N = 64, 2 threads, OpenBLAS products): 96K to 192K floats within 2% of
 * each other, 256K 3% and 48K 7% slower. With the tile kernels (gemm_tile.c,
 * which read U in place instead of packing it per call; 1 thread, load ~7):
 * 16K to 128K floats here and 32K to 256K for F(4x4) within the noise
 * (+-10%), smaller chunks (fewer tiles per U pass) no faster. */
#define CHUNK_FLOATS (128 * 1024)
/* The same for F(4x4) forward (36 matrices of V and M). Measured 64K to 256K
 * alike on the UNet's convs (N = 64, 2 threads, noisy), 256K 10-40% faster
 * than 128K with 192 channels in and out. */
#define CHUNK_FLOATS4 (256 * 1024)

/* Distance between the 16 element matrices of a chunk holding n floats each:
 * an odd number of 64-byte lines, so that the 16 rows the transforms write at
 * once fall in different cache sets (a power-of-two distance, e.g. 128 tiles
 * x 64 channels, made the 64->64 7x7 conv 2x slower). */
static size_t estride(size_t n) { return ddpm_round16(n) | 16; }

int ddpm_winograd_applies(const ddpm_conv2d_desc *d) {
    return d->K == 3 && d->S == 1 && d->P == 1;
}

/* Geometry and scratch layout for output tiles of m x m (m = 2 or 4, ne =
 * (m+2)^2 elements a transformed tile); tc = RC*TW tiles in a chunk at most.
 * Per thread, in this order:
 *   V   vsz floats   (ne, tc, C)  input tiles, in backward then dV
 *   M   msz floats   (ne, tc, F)  output tiles M, or dYhat
 *   X   xsz floats   (XR, W, C)   staged input rows, in backward also din rows
 *   Y   ysz floats   (YR, W, F)   staged output rows, or dout rows
 *   Z   zsz floats   (max(C, F))  zeros, read for the padding
 *   S   zsz floats   (max(C, F))  sink, written for outputs past the edge
 *   dU  usz floats   (ne, C, F)   partial weight gradient (backward, m = 2 only)
 *   pk  pka + pkb    bf16 pairs   a product's packed operands (AVX512_BF16 only)
 * after the shared U (usz floats, (ne, C, F)), and followed by U packed as
 * bf16 pairs (pku, AVX512_BF16 only: packed once per call, where the float
 * tile kernels read U in place). A segment of at most SR tile
 * rows reads XR = min(m*SR + 2, H) input rows and writes YR = min(m*SR, H). */
typedef struct {
    int m, ne;  /* output tile size, elements of a transformed tile */
    int TH, TW; /* tile rows and columns per image */
    int RC;     /* tile rows per chunk */
    size_t eu;  /* distance between U[e] (or dU[e]) matrices */
    size_t usz, vsz, msz, xsz, ysz, zsz, thr;
    /* bf16 on AVX512_BF16 (packed): the products' operands as pairs of bf16,
     * U[e] packed once per call (pku in all, pkeu apart, after the threads'
     * parts), the other operands per chunk (pka + pkb at the end of a
     * thread's part); 0 otherwise */
    int packed;
    size_t pka, pkb, pkeu, pku;
} plan;

static int imin(int a, int b) { return a < b ? a : b; }

static plan make_plan(const ddpm_conv2d_desc *d, int m) {
    plan p;
    const size_t C = (size_t)d->C, F = (size_t)d->F;
    p.m = m;
    p.ne = (m + 2) * (m + 2);
    p.TH = (d->H + m - 1) / m;
    p.TW = (d->W + m - 1) / m;
    size_t target = (m == 4 ? CHUNK_FLOATS4 : CHUNK_FLOATS) / ((size_t)p.ne * (C + F)); /* tiles */
    size_t rc = target / (size_t)p.TW;
    if (rc < 1) rc = 1;
    size_t rows = (size_t)d->N * p.TH; /* capped by the batch: never decreases with N */
    if (rc > rows) rc = rows;
    p.RC = (int)rc;
    const int SR = imin(p.RC, p.TH);
    size_t tc = rc * p.TW;
    p.eu = estride(C * F);
    p.usz = p.ne * p.eu;
    p.vsz = p.ne * estride(tc * C);
    p.msz = p.ne * estride(tc * F);
    p.xsz = ddpm_round16((size_t)imin(m * SR + 2, d->H) * d->W * C);
    p.ysz = ddpm_round16((size_t)imin(m * SR, d->H) * d->W * F);
    p.zsz = ddpm_round16(C > F ? C : F);
    p.thr = p.vsz + p.msz + p.xsz + p.ysz + 2 * p.zsz + (m == 2 ? p.usz : 0); /* dU: F(2x2) */
    /* the space whatever d->prec: a UNet sizes its arena before its
     * precision is set (ddpm_unet_set_precision) */
    const bool space = ddpm_bf16_isa_selected() == DDPM_BF16_AVX512;
    p.packed = space && d->prec == DDPM_PREC_BF16;
    p.pka = p.pkb = p.pkeu = p.pku = 0;
    if (space) {
        const int c = d->C, f = d->F, q = (int)tc;
        /* the backward's V^T and dYhat pairs along tiles (the other
         * operands are converted where the transforms write them) */
        p.pka = ddpm_round16(ddpm_bf16_packed_a_size(c, q));
        p.pkb = ddpm_round16(ddpm_bf16_packed_b_size(f, q));
        size_t b = ddpm_bf16_packed_b_size(f, c); /* U[e] (C, F), or U[e]^T (F, C) */
        if (ddpm_bf16_packed_b_size(c, f) > b) b = ddpm_bf16_packed_b_size(c, f);
        p.pkeu = ddpm_round16(b);
        p.pku = p.ne * p.pkeu;
        p.thr += p.pka + p.pkb;
    }
    return p;
}

size_t ddpm_winograd_workspace(const ddpm_conv2d_desc *d, int m, int T) {
    if (d->N <= 0 || d->C <= 0 || d->F <= 0 || d->H <= 0 || d->W <= 0) return 0;
    const size_t nt = (size_t)(T < 1 ? 1 : T);
    plan p = make_plan(d, 2); /* backward, and forward with m = 2 */
    size_t n = p.usz + nt * p.thr + p.pku;
    if (m == 4) {
        plan p4 = make_plan(d, 4);
        size_t n4 = p4.usz + nt * p4.thr + p4.pku;
        if (n4 > n) n = n4;
    }
    return n;
}

/* ---- layout changes -------------------------------------------------------------
 * Between NCHW channel planes and channels-last rows, by 8x8 blocks transposed
 * in registers. v8f is a vector_size type, which gcc and clang both provide
 * (compiled to AVX with -march=native on x86, to SSE or NEON pairs without);
 * SHUF picks elements of two v8f by index (0-7 from a, 8-15 from b):
 * __builtin_shufflevector in clang and gcc >= 12, __builtin_shuffle before. */

/* IVDEP: the loop that follows has no dependences through memory. */
#if defined(__clang__)
#define IVDEP _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__)
#define IVDEP _Pragma("GCC ivdep")
#else
#define IVDEP
#endif

typedef float v8f __attribute__((vector_size(32)));
#if defined(__clang__) || __GNUC__ >= 12
#define SHUF(a, b, ...) __builtin_shufflevector(a, b, __VA_ARGS__)
#else
typedef int v8i __attribute__((vector_size(32)));
#define SHUF(a, b, ...) __builtin_shuffle(a, b, (v8i){__VA_ARGS__})
#endif

/* r[i][j] <- r[j][i]: pairs interleaved, then pairs of pairs, then halves. */
static inline void transpose8x8(v8f r[8]) {
    v8f t[8];
    for (int i = 0; i < 8; i += 2) {
        t[i] = SHUF(r[i], r[i + 1], 0, 8, 1, 9, 4, 12, 5, 13);
        t[i + 1] = SHUF(r[i], r[i + 1], 2, 10, 3, 11, 6, 14, 7, 15);
    }
    for (int i = 0; i < 8; i += 4)
        for (int k = 0; k < 2; k++) {
            v8f a = t[i + k], b = t[i + k + 2];
            r[i + 2 * k] = SHUF(a, b, 0, 1, 8, 9, 4, 5, 12, 13);
            r[i + 2 * k + 1] = SHUF(a, b, 2, 3, 10, 11, 6, 7, 14, 15);
        }
    for (int k = 0; k < 4; k++) {
        t[k] = SHUF(r[k], r[k + 4], 0, 1, 2, 3, 8, 9, 10, 11);
        t[k + 4] = SHUF(r[k], r[k + 4], 4, 5, 6, 7, 12, 13, 14, 15);
    }
    for (int k = 0; k < 8; k++) r[k] = t[k];
}

/* dst (P, C) [p][c] = src[c*ss + p]: P pixels of C planes (stride ss) to channels-last. */
static void planes_to_cl(float *restrict dst, const float *restrict src, size_t ss, int C,
                         size_t P) {
    int c = 0;
    for (; c + 8 <= C; c += 8) {
        const float *s = src + (size_t)c * ss;
        size_t p = 0;
        for (; p + 8 <= P; p += 8) {
            v8f r[8];
            for (int i = 0; i < 8; i++) memcpy(&r[i], s + i * ss + p, sizeof r[i]);
            transpose8x8(r);
            for (int j = 0; j < 8; j++) memcpy(dst + (p + j) * C + c, &r[j], sizeof r[j]);
        }
        for (; p < P; p++)
            for (int i = 0; i < 8; i++) dst[p * C + c + i] = s[i * ss + p];
    }
    for (; c < C; c++)
        for (size_t p = 0; p < P; p++) dst[p * C + c] = src[c * ss + p];
}

/* dst[c*ds + p] = src (P, C) [p][c], or += when add: channels-last back to planes. */
static void cl_to_planes(float *restrict dst, size_t ds, const float *restrict src, int C,
                         size_t P, int add) {
    int c = 0;
    for (; c + 8 <= C; c += 8) {
        float *d = dst + (size_t)c * ds;
        size_t p = 0;
        for (; p + 8 <= P; p += 8) {
            v8f r[8];
            for (int j = 0; j < 8; j++) memcpy(&r[j], src + (p + j) * C + c, sizeof r[j]);
            transpose8x8(r);
            for (int i = 0; i < 8; i++) {
                if (add) {
                    v8f o;
                    memcpy(&o, d + i * ds + p, sizeof o);
                    r[i] += o;
                }
                memcpy(d + i * ds + p, &r[i], sizeof r[i]);
            }
        }
        for (; p < P; p++)
            for (int i = 0; i < 8; i++)
                d[i * ds + p] = (add ? d[i * ds + p] : 0.0f) + src[p * C + c + i];
    }
    for (; c < C; c++)
        for (size_t p = 0; p < P; p++)
            dst[c * ds + p] = (add ? dst[c * ds + p] : 0.0f) + src[p * C + c];
}

/* ---- tile transforms ----------------------------------------------------------
 * One tile at a time, vectorized over the channels. A tile's window comes as
 * a table of pointers to channel vectors (zero or sink rows past the edge);
 * its 16 transformed elements go to rows es apart ([e] of V, M, dYhat). The
 * loops over channels need `ivdep`: gcc cannot prove that the 16 rows do not
 * overlap, and gives up rather than check all pairs at run time. (Where
 * several window pointers share the sink, its contents are garbage.) */

/* v[e*es + c] = (B^T d B)[e] of the window d[4k + l] (k row, l column). */
static void input_tile(float *restrict v, size_t es, const float *const *d, int C) {
IVDEP
    for (int c = 0; c < C; c++) {
        float t[4][4]; /* B^T d: rows combined */
        for (int l = 0; l < 4; l++) {
            float d0 = d[l][c], d1 = d[4 + l][c], d2 = d[8 + l][c], d3 = d[12 + l][c];
            t[0][l] = d0 - d2;
            t[1][l] = d1 + d2;
            t[2][l] = d2 - d1;
            t[3][l] = d1 - d3;
        }
        for (int i = 0; i < 4; i++) { /* (B^T d) B: columns combined */
            v[(4 * i + 0) * es + c] = t[i][0] - t[i][2];
            v[(4 * i + 1) * es + c] = t[i][1] + t[i][2];
            v[(4 * i + 2) * es + c] = t[i][2] - t[i][1];
            v[(4 * i + 3) * es + c] = t[i][1] - t[i][3];
        }
    }
}

/* y[2i + j] (2x2) = (A^T m A)[i][j] + bias of m[e] = m[e*es + f]. */
static void output_tile(float *const *y, const float *restrict m, size_t es,
                        const float *restrict bias, int F) {
IVDEP
    for (int f = 0; f < F; f++) {
        float s[2][4]; /* A^T m */
        for (int j = 0; j < 4; j++) {
            float m0 = m[(0 + j) * es + f], m1 = m[(4 + j) * es + f], m2 = m[(8 + j) * es + f],
                  m3 = m[(12 + j) * es + f];
            s[0][j] = m0 + m1 + m2;
            s[1][j] = m1 - m2 - m3;
        }
        float b = bias ? bias[f] : 0.0f;
        for (int i = 0; i < 2; i++) { /* (A^T m) A */
            y[2 * i + 0][f] = s[i][0] + s[i][1] + s[i][2] + b;
            y[2 * i + 1][f] = s[i][1] - s[i][2] - s[i][3] + b;
        }
    }
}

/* F(4x4) transforms, on 8 channels at a time (v8f; a partial block of n < 8
 * channels goes through the same instructions, zero-padded, so every channel
 * gets the same rounding). bt6: y (6) = B^T x (6); at6: s (4) = A^T m (6)
 * (matrices at the top). The build does not contract a*b + c, so the
 * multiply-adds are explicit: fused where the target has FMA. */
/* Without AVX (e.g. the sanitizer build), gcc notes that returning a v8f
 * would change the ABI: these are all static, so there is no ABI to keep. */
#pragma GCC diagnostic ignored "-Wpsabi"
#ifdef __FMA__
static inline v8f vfma(v8f a, v8f b, v8f c) {
    return (v8f)_mm256_fmadd_ps((__m256)a, (__m256)b, (__m256)c);
}
#else
static inline v8f vfma(v8f a, v8f b, v8f c) { return a * b + c; }
#endif

static inline v8f vset(float x) { return (v8f){x, x, x, x, x, x, x, x}; }

static inline v8f vload(const float *p, int n) {
    v8f r = vset(0.0f);
    if (n == 8)
        memcpy(&r, p, sizeof r);
    else
        for (int i = 0; i < n; i++) r[i] = p[i];
    return r;
}

static inline void vstore(float *p, v8f v, int n) {
    if (n == 8)
        memcpy(p, &v, sizeof v);
    else
        for (int i = 0; i < n; i++) p[i] = v[i];
}

static inline void bt6(v8f y[6], v8f x0, v8f x1, v8f x2, v8f x3, v8f x4, v8f x5) {
    const v8f p = x3 - x1, q = x4 - x2;
    y[0] = vfma(vset(-2.0f), x2, vfma(vset(1.5f), p, x0 + x4));
    y[1] = vfma(vset(2.5f), x3, vfma(vset(0.5f), x2, x4 - x1));
    y[2] = vfma(vset(0.5f), x3, vfma(vset(-2.5f), x2, x4 + x1));
    y[3] = vfma(vset(2.0f), p, q);
    y[4] = vfma(vset(-0.5f), p, q);
    y[5] = vfma(vset(1.5f), q, vfma(vset(-2.0f), x3, x1 + x5));
}

static inline void at6(v8f s[4], v8f m0, v8f m1, v8f m2, v8f m3, v8f m4, v8f m5) {
    const v8f a = m1 + m2, b = m1 - m2;
    s[0] = m0 + a + m3 + m4;
    s[1] = vfma(vset(-2.0f), m4, vfma(vset(0.5f), m3, b));
    s[2] = vfma(vset(4.0f), m4, vfma(vset(0.25f), m3, a));
    s[3] = vfma(vset(-8.0f), m4, vfma(vset(0.125f), m3, b + m5));
}

/* t[i][l] = (B^T d)[i][l], channels c .. c+n-1 of the window d[6k + l]. */
static inline __attribute__((always_inline)) void input_rows4(v8f t[6][6], const float *const *d, int c,
                                                              int n) {
    for (int l = 0; l < 6; l++) {
        v8f y[6];
        bt6(y, vload(d[l] + c, n), vload(d[6 + l] + c, n), vload(d[12 + l] + c, n),
            vload(d[18 + l] + c, n), vload(d[24 + l] + c, n), vload(d[30 + l] + c, n));
        for (int i = 0; i < 6; i++) t[i][l] = y[i];
    }
}

/* y = (B^T d B)[i][0..5] from row i of t = B^T d. Arrays, not vectors, cross
 * into input_block4_bf16: clang refuses a v8f argument between functions of
 * different targets (the ABI differs without AVX). */
static inline __attribute__((always_inline)) void input_cols4(v8f y[6], const v8f t[6]) {
    bt6(y, t[0], t[1], t[2], t[3], t[4], t[5]);
}

/* Channels c .. c+n-1 of input_tile4. */
static inline __attribute__((always_inline)) void input_block4(float *restrict v, size_t es,
                                                               const float *const *d, int c,
                                                               int n) {
    v8f t[6][6]; /* B^T d: t[i][l] */
    input_rows4(t, d, c, n);
    for (int i = 0; i < 6; i++) { /* (B^T d) B */
        v8f y[6];
        input_cols4(y, t[i]);
        for (int j = 0; j < 6; j++) vstore(v + (6 * i + j) * es + c, y[j], n);
    }
}

/* v[e*es + c] = (B^T d B)[e] (6x6) of the window d[6k + l], F(4x4). */
static void input_tile4(float *restrict v, size_t es, const float *const *d, int C) {
    int c = 0;
    for (; c + 8 <= C; c += 8) input_block4(v, es, d, c, 8);
    if (c < C) input_block4(v, es, d, c, C - c);
}

/* Channels f .. f+n-1 of output_tile4. */
static inline __attribute__((always_inline)) void output_block4(float *const *y,
                                                                const float *restrict m,
                                                                size_t es,
                                                                const float *restrict bias,
                                                                int f, int n) {
    v8f s[4][6]; /* A^T m */
    for (int j = 0; j < 6; j++) {
        v8f r[4];
        at6(r, vload(m + j * es + f, n), vload(m + (6 + j) * es + f, n),
            vload(m + (12 + j) * es + f, n), vload(m + (18 + j) * es + f, n),
            vload(m + (24 + j) * es + f, n), vload(m + (30 + j) * es + f, n));
        for (int i = 0; i < 4; i++) s[i][j] = r[i];
    }
    const v8f b = bias ? vload(bias + f, n) : vset(0.0f);
    for (int i = 0; i < 4; i++) { /* (A^T m) A */
        v8f r[4];
        at6(r, s[i][0], s[i][1], s[i][2], s[i][3], s[i][4], s[i][5]);
        for (int j = 0; j < 4; j++) vstore(y[4 * i + j] + f, r[j] + b, n);
    }
}

/* y[4i + j] (4x4) = (A^T m A)[i][j] + bias of m[e] = m[e*es + f], F(4x4). */
static void output_tile4(float *const *y, const float *restrict m, size_t es,
                         const float *restrict bias, int F) {
    int f = 0;
    for (; f + 8 <= F; f += 8) output_block4(y, m, es, bias, f, 8);
    if (f < F) output_block4(y, m, es, bias, f, F - f);
}

/* o[e*es + f] = (A g A^T)[e] of the 2x2 dout tile g[2a + b]. */
static void dout_tile(float *restrict o, size_t es, const float *const *g, int F) {
IVDEP
    for (int f = 0; f < F; f++) {
        float h[4][2]; /* A g: rows */
        for (int b = 0; b < 2; b++) {
            float g0 = g[b][f], g1 = g[2 + b][f];
            h[0][b] = g0;
            h[1][b] = g0 + g1;
            h[2][b] = g0 - g1;
            h[3][b] = -g1;
        }
        for (int i = 0; i < 4; i++) { /* (A g) A^T: columns */
            o[(4 * i + 0) * es + f] = h[i][0];
            o[(4 * i + 1) * es + f] = h[i][0] + h[i][1];
            o[(4 * i + 2) * es + f] = h[i][0] - h[i][1];
            o[(4 * i + 3) * es + f] = -h[i][1];
        }
    }
}

/* x[4k + l] += (B dV B^T)[k][l] of dV[e] = v[e*es + c], onto the window x. */
static void din_tile(float *const *x, const float *restrict v, size_t es, int C) {
IVDEP
    for (int c = 0; c < C; c++) {
        float t[4][4]; /* B dV: rows; (B u)_k = u0, u1-u2+u3, -u0+u1+u2, -u3 */
        for (int j = 0; j < 4; j++) {
            float v0 = v[(0 + j) * es + c], v1 = v[(4 + j) * es + c], v2 = v[(8 + j) * es + c],
                  v3 = v[(12 + j) * es + c];
            t[0][j] = v0;
            t[1][j] = v1 - v2 + v3;
            t[2][j] = v1 + v2 - v0;
            t[3][j] = -v3;
        }
        for (int k = 0; k < 4; k++) { /* (B dV) B^T: columns */
            x[4 * k + 0][c] += t[k][0];
            x[4 * k + 1][c] += t[k][1] - t[k][2] + t[k][3];
            x[4 * k + 2][c] += t[k][1] + t[k][2] - t[k][0];
            x[4 * k + 3][c] -= t[k][3];
        }
    }
}

/* One segment: image n, tile rows th0 .. th0+nth-1, staged input rows
 * [ya, yb) and output rows [2*th0, yo), its tiles at q0 .. of the chunk. */
typedef struct {
    int n, th0, nth, ya, yb, yo;
    size_t q0;
} segment;

/* Channel vector of staged pixel (y, x) (rows from y0), or `outside` past the edge. */
static inline float *pixel(float *stage, int y0, int y, int x, int H, int W, int C,
                           float *outside) {
    return y >= 0 && y < H && x >= 0 && x < W ? stage + ((size_t)(y - y0) * W + x) * C : outside;
}

/* V[e] rows s->q0 .. = B^T d B of the segment's tiles (m x m outputs, so
 * (m+2) x (m+2) windows); X holds its input rows. */
static void input_tiles(float *V, size_t es, float *X, float *zero, const segment *s, int C,
                        int H, int W, int TW, int m) {
    const int n = m + 2;
    for (int lt = 0; lt < s->nth; lt++)
        for (int tw = 0; tw < TW; tw++) {
            const int y = m * (s->th0 + lt) - 1, x = m * tw - 1; /* window corner */
            const float *d[NE4];
            for (int e = 0; e < n * n; e++)
                d[e] = pixel(X, s->ya, y + e / n, x + e % n, H, W, C, zero);
            float *v = V + (s->q0 + (size_t)lt * TW + tw) * C;
            if (m == 4)
                input_tile4(v, es, d, C);
            else
                input_tile(v, es, d, C);
        }
}

#ifdef DDPM_X86
/* v[e*esb + c] = bf16(tmp[e*16 + c]) for e < ne, c < n (n <= 16): a block of
 * transformed channels, converted as gemm_bf16.c converts (vcvtneps2bf16). */
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) static inline void store_bf16(
    uint16_t *v, size_t esb, const float *tmp, int ne, int n) {
    const __mmask16 k = (__mmask16)((1u << n) - 1);
    for (int e = 0; e < ne; e++) {
        const __m256bh h = _mm512_cvtneps_pbh(_mm512_maskz_loadu_ps(k, tmp + e * 16));
        _mm256_mask_storeu_epi16(v + e * esb, k, (__m256i)h);
    }
}

/* input_block4 with its 36 rows converted to bf16 (vcvtneps2bf16, as
 * gemm_bf16.c converts) as they leave the registers: the same float
 * transform, so the same operands as converting a float V. */
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) static inline void input_block4_bf16(
    uint16_t *restrict v, size_t esb, const float *const *d, int c, int n) {
    v8f t[6][6];
    input_rows4(t, d, c, n);
    const __mmask8 k = (__mmask8)((1u << n) - 1);
    for (int i = 0; i < 6; i++) {
        v8f y[6];
        input_cols4(y, t[i]);
        for (int j = 0; j < 6; j++)
            _mm_mask_storeu_epi16(v + (6 * i + j) * esb + c, k, (__m128i)_mm256_cvtneps_pbh((__m256)y[j]));
    }
}

/* input_tiles for the AVX512_BF16 products: straight into the packed
 * operand, V[e] (tiles, C) as rows of (C + 1) / 2 pairs of bf16, esb
 * uint16_t apart (a pair's odd element past C is 0). Saves the float V's
 * write and the packing's pass over it. F(4x4) converts in registers;
 * F(2x2) (narrow convs) goes 16 channels at a time through a small buffer. */
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) static void input_tiles_bf16(
    uint16_t *Vb, size_t esb, float *X, float *zero, const segment *s, int C, int H, int W, int TW,
    int m) {
    const int n = m + 2, ne = n * n;
    const size_t row = 2 * (size_t)((C + 1) / 2);
    float tmp[NE * 16];
    for (int lt = 0; lt < s->nth; lt++)
        for (int tw = 0; tw < TW; tw++) {
            const int y = m * (s->th0 + lt) - 1, x = m * tw - 1; /* window corner */
            const float *d[NE4];
            for (int e = 0; e < ne; e++) d[e] = pixel(X, s->ya, y + e / n, x + e % n, H, W, C, zero);
            uint16_t *v = Vb + (s->q0 + (size_t)lt * TW + tw) * row;
            if (m == 4) {
                for (int c0 = 0; c0 < C; c0 += 8) input_block4_bf16(v, esb, d, c0, C - c0 < 8 ? C - c0 : 8);
            } else {
                for (int c0 = 0; c0 < C; c0 += 16) {
                    const int nc = C - c0 < 16 ? C - c0 : 16;
                    const float *dc[NE];
                    for (int e = 0; e < ne; e++) dc[e] = d[e] + c0;
                    input_tile(tmp, 16, dc, nc);
                    store_bf16(v + c0, esb, tmp, ne, nc);
                }
            }
            if (C & 1)
                for (int e = 0; e < ne; e++) v[e * esb + C] = 0;
        }
}

/* dout_tiles for the AVX512_BF16 products, as input_tiles_bf16: dYhat[e]
 * (tiles, F) as rows of (F + 1) / 2 pairs of bf16, esb uint16_t apart. */
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) static void dout_tiles_bf16(
    uint16_t *Db, size_t esb, float *Y, float *zero, const segment *s, int F, int H, int W, int TW) {
    const size_t row = 2 * (size_t)((F + 1) / 2);
    float tmp[NE * 16];
    for (int lt = 0; lt < s->nth; lt++)
        for (int tw = 0; tw < TW; tw++) {
            const int y = 2 * (s->th0 + lt), x = 2 * tw;
            const float *g[4];
            for (int e = 0; e < 4; e++) g[e] = pixel(Y, 2 * s->th0, y + e / 2, x + e % 2, H, W, F, zero);
            uint16_t *o = Db + (s->q0 + (size_t)lt * TW + tw) * row;
            for (int f0 = 0; f0 < F; f0 += 16) {
                const int nf = F - f0 < 16 ? F - f0 : 16;
                const float *gc[4] = {g[0] + f0, g[1] + f0, g[2] + f0, g[3] + f0};
                dout_tile(tmp, 16, gc, nf);
                store_bf16(o + f0, esb, tmp, NE, nf);
            }
            if (F & 1)
                for (int e = 0; e < NE; e++) o[e * esb + F] = 0;
        }
}

/* Bp[p][j] = (R[2p][j], R[2p+1][j]) for the K rows of N bf16 of R (rows
 * `row` apart; row 2p+1 = K is zeros), pairs p < (K + 1) / 2, as
 * ddpm_bf16_pack_b lays out a (K, N) operand (columns to a multiple of 16,
 * zero past N): the bf16 dYhat as the B operand of dU, without converting
 * it again. */
__attribute__((target("avx512bf16,avx512f,avx512bw,avx512vl"))) static void pair_rows_bf16(
    uint32_t *Bp, const uint16_t *R, size_t row, int K, int N) {
    const int np = (K + 1) / 2;
    const size_t ldb = ((size_t)N + 15) & ~(size_t)15;
    for (int p = 0; p < np; p++) {
        const uint16_t *r0 = R + (size_t)(2 * p) * row, *r1 = R + (size_t)(2 * p + 1) * row;
        const bool has1 = 2 * p + 1 < K;
        for (size_t j0 = 0; j0 < ldb; j0 += 16) {
            const int n = (size_t)N > j0 ? (N - (int)j0 < 16 ? N - (int)j0 : 16) : 0;
            const __mmask16 k = (__mmask16)(n >= 16 ? 0xFFFFu : (1u << n) - 1);
            const __m512i lo = _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, r0 + j0));
            const __m512i hi = has1 ? _mm512_cvtepu16_epi32(_mm256_maskz_loadu_epi16(k, r1 + j0))
                                    : _mm512_setzero_si512();
            _mm512_storeu_si512(Bp + (size_t)p * ldb + j0, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}
#endif

/* Y (output rows, W, F) = A^T m A + bias of the segment's tiles M[e]. */
static void output_tiles(float *Y, float *sink, const float *M, size_t es, const float *bias,
                         const segment *s, int F, int H, int W, int TW, int m) {
    for (int lt = 0; lt < s->nth; lt++)
        for (int tw = 0; tw < TW; tw++) {
            const int y = m * (s->th0 + lt), x = m * tw;
            float *o[16];
            for (int e = 0; e < m * m; e++)
                o[e] = pixel(Y, m * s->th0, y + e / m, x + e % m, H, W, F, sink);
            const float *mm = M + (s->q0 + (size_t)lt * TW + tw) * F;
            if (m == 4)
                output_tile4(o, mm, es, bias, F);
            else
                output_tile(o, mm, es, bias, F);
        }
}

/* D[e] rows s->q0 .. = A dy A^T of the segment's tiles; Y holds its dout rows. */
static void dout_tiles(float *D, size_t es, float *Y, float *zero, const segment *s, int F,
                       int H, int W, int TW) {
    for (int lt = 0; lt < s->nth; lt++)
        for (int tw = 0; tw < TW; tw++) {
            const int y = 2 * (s->th0 + lt), x = 2 * tw;
            const float *g[4];
            for (int e = 0; e < 4; e++)
                g[e] = pixel(Y, 2 * s->th0, y + e / 2, x + e % 2, H, W, F, zero);
            dout_tile(D + (s->q0 + (size_t)lt * TW + tw) * F, es, g, F);
        }
}

/* X (input rows, W, C) += B dV B^T of the segment's tiles dV[e], tile after tile
 * (the windows overlap, so the adds run in a fixed order). */
static void din_tiles(float *X, float *sink, const float *V, size_t es, const segment *s, int C,
                      int H, int W, int TW) {
    for (int lt = 0; lt < s->nth; lt++)
        for (int tw = 0; tw < TW; tw++) {
            const int y = 2 * (s->th0 + lt) - 1, x = 2 * tw - 1;
            float *p[16];
            for (int e = 0; e < 16; e++)
                p[e] = pixel(X, s->ya, y + e / 4, x + e % 4, H, W, C, sink);
            din_tile(p, V + (s->q0 + (size_t)lt * TW + tw) * C, es, C);
        }
}

/* U[e] = (G g G^T)[e] of g = weight[f, c], its 16 matrices eu apart: U[e] (C, F)
 * [c][f], or with fc set (F, C) [f][c]. Writes the rows [r0, r1) of that layout. */
static void weight_tiles(float *restrict U, size_t eu, int fc, const float *restrict weight,
                         int C, int F, int r0, int r1) {
    const int ncol = fc ? C : F;
    for (int r = r0; r < r1; r++)
        for (int k = 0; k < ncol; k++) {
            const int f = fc ? r : k, c = fc ? k : r;
            const float *g = weight + ((size_t)f * C + c) * 9; /* (3, 3) */
            float t[4][3];                                      /* G g */
            for (int b = 0; b < 3; b++) {
                t[0][b] = g[b];
                t[1][b] = 0.5f * (g[b] + g[3 + b] + g[6 + b]);
                t[2][b] = 0.5f * (g[b] - g[3 + b] + g[6 + b]);
                t[3][b] = g[6 + b];
            }
            float *u = U + (size_t)r * ncol + k;
            for (int i = 0; i < 4; i++) { /* (G g) G^T */
                u[(4 * i + 0) * eu] = t[i][0];
                u[(4 * i + 1) * eu] = 0.5f * (t[i][0] + t[i][1] + t[i][2]);
                u[(4 * i + 2) * eu] = 0.5f * (t[i][0] - t[i][1] + t[i][2]);
                u[(4 * i + 3) * eu] = t[i][2];
            }
        }
}

/* F(4x4): U[e] = (G g G^T)[e] (6x6) of g = weight[f, c], in double, rounded
 * once; layout (36, C, F) as weight_tiles with fc = 0, rows c in [r0, r1). */
static void weight_tiles4(float *restrict U, size_t eu, const float *restrict weight, int C,
                          int F, int r0, int r1) {
    for (int c = r0; c < r1; c++)
        for (int f = 0; f < F; f++) {
            const float *g = weight + ((size_t)f * C + c) * 9; /* (3, 3) */
            double t[6][3];                                     /* G g */
            for (int b = 0; b < 3; b++) {
                double g0 = g[b], g1 = g[3 + b], g2 = g[6 + b];
                t[0][b] = g0;
                t[1][b] = (g0 + g1 + g2) / 3.0;
                t[2][b] = (g1 - g0 - g2) / 3.0;
                t[3][b] = -(16.0 * g0 + 8.0 * g1 + 4.0 * g2) / 15.0;
                t[4][b] = (g0 - 2.0 * g1 + 4.0 * g2) / 15.0;
                t[5][b] = g2;
            }
            float *u = U + (size_t)c * F + f;
            for (int i = 0; i < 6; i++) { /* (G g) G^T */
                double g0 = t[i][0], g1 = t[i][1], g2 = t[i][2];
                u[(6 * i + 0) * eu] = (float)g0;
                u[(6 * i + 1) * eu] = (float)((g0 + g1 + g2) / 3.0);
                u[(6 * i + 2) * eu] = (float)((g1 - g0 - g2) / 3.0);
                u[(6 * i + 3) * eu] = (float)(-(16.0 * g0 + 8.0 * g1 + 4.0 * g2) / 15.0);
                u[(6 * i + 4) * eu] = (float)((g0 - 2.0 * g1 + 4.0 * g2) / 15.0);
                u[(6 * i + 5) * eu] = (float)g2;
            }
        }
}

/* dweight[f, c] += G^T D G with D[e] = sum over threads u < nt of dU_u[e][c][f]
 * (in thread order), for c in [c0, c1). dU_u[e] is at parts + u*stride + e*eu. */
static void weight_grad(float *restrict dweight, const float *restrict parts, size_t stride,
                        size_t eu, int nt, int C, int F, int c0, int c1) {
    for (int c = c0; c < c1; c++)
        for (int f = 0; f < F; f++) {
            float D[4][4];
            for (int e = 0; e < NE; e++) {
                const float *s = parts + (size_t)e * eu + (size_t)c * F + f;
                float acc = s[0];
                for (int u = 1; u < nt; u++) acc += s[(size_t)u * stride];
                D[e / 4][e % 4] = acc;
            }
            float t[3][4]; /* G^T D; G^T = [1 1/2 1/2 0; 0 1/2 -1/2 0; 0 1/2 1/2 1] */
            for (int j = 0; j < 4; j++) {
                t[0][j] = D[0][j] + 0.5f * (D[1][j] + D[2][j]);
                t[1][j] = 0.5f * (D[1][j] - D[2][j]);
                t[2][j] = 0.5f * (D[1][j] + D[2][j]) + D[3][j];
            }
            float *dg = dweight + ((size_t)f * C + c) * 9; /* (3, 3) */
            for (int a = 0; a < 3; a++) {                  /* (G^T D) G */
                dg[3 * a + 0] += t[a][0] + 0.5f * (t[a][1] + t[a][2]);
                dg[3 * a + 1] += 0.5f * (t[a][1] - t[a][2]);
                dg[3 * a + 2] += 0.5f * (t[a][1] + t[a][2]) + t[a][3];
            }
        }
}

/* ---- passes ------------------------------------------------------------------ */

/* One tile product: float, or with bf16 operands (d->prec; the transformed
 * tiles and weights are rounded, the sums stay float). With the portable
 * bf16 path the operands are rounded in place where the transforms write
 * them (round_slices, pre_round), which saves its rounded copies: the same
 * arithmetic as ddpm_tile_gemm_bf16's portable path, bit for bit. */
static bool pre_round(const ddpm_conv2d_desc *d) {
    return d->prec == DDPM_PREC_BF16 && ddpm_bf16_isa_selected() == DDPM_BF16_PORTABLE;
}

/* ne slices of n floats, es apart, rounded to bf16 in place (when pre_round). */
static void round_slices(const ddpm_conv2d_desc *d, float *x, int ne, size_t es, size_t n) {
    if (!pre_round(d)) return;
    for (int e = 0; e < ne; e++) ddpm_bf16_round_inplace(x + (size_t)e * es, n);
}

static void wgemm(const ddpm_conv2d_desc *d, ddpm_isa isa, bool ta, int M, int N, int K,
                  const float *A, int lda, const float *B, int ldb, float *C, int ldc, bool acc) {
    if (d->prec == DDPM_PREC_BF16 && !pre_round(d))
        ddpm_tile_gemm_bf16(ddpm_bf16_isa_selected(), ta, false, M, N, K, A, lda, B, ldb, C, ldc, acc);
    else
        ddpm_tile_gemm(isa, ta, M, N, K, A, lda, B, ldb, C, ldc, acc);
}

/* The next segment of the chunk of tile rows [r0, r1), from tile row *r on;
 * 0 when the chunk is done. Loop: for (int r = r0; next_segment(&s, &r, ...);).
 * m: output tile size. */
static int next_segment(segment *s, int *r, int r0, int r1, int H, int TH, int TW, int m) {
    if (*r >= r1) return 0;
    s->n = *r / TH;
    s->th0 = *r % TH;
    s->nth = imin(TH - s->th0, r1 - *r);
    s->ya = m * s->th0 - 1 < 0 ? 0 : m * s->th0 - 1;
    s->yb = imin(m * (s->th0 + s->nth) + 1, H);
    s->yo = imin(m * (s->th0 + s->nth), H);
    s->q0 = (size_t)(*r - r0) * TW;
    *r += s->nth;
    return 1;
}

void ddpm_winograd_forward(float *out, const float *in, const float *weight, const float *bias,
                           const ddpm_conv2d_desc *d, int m, int T, float *work) {
    const int N = d->N, C = d->C, H = d->H, W = d->W, F = d->F;
    if (N <= 0 || C <= 0 || F <= 0 || H <= 0 || W <= 0) return;
    if (m != 4) m = 2;
    const plan p = make_plan(d, m);
    const int TH = p.TH, TW = p.TW, rows = N * TH, nchunks = (rows + p.RC - 1) / p.RC;
    const size_t HW = (size_t)H * W;
    const ddpm_isa isa = ddpm_isa_selected();
    float *U = work; /* (ne, C, F) */

#pragma omp parallel num_threads(T) if (T > 1)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        if (m == 4)
            weight_tiles4(U, p.eu, weight, C, F, C * t / nt, C * (t + 1) / nt);
        else
            weight_tiles(U, p.eu, 0, weight, C, F, C * t / nt, C * (t + 1) / nt);
        round_slices(d, U + (size_t)(C * t / nt) * F, p.ne, p.eu, (size_t)(C * (t + 1) / nt - C * t / nt) * F);
        float *V = work + p.usz + (size_t)t * p.thr; /* (ne, tiles, C) */
        float *M = V + p.vsz;                        /* (ne, tiles, F) */
        float *X = M + p.msz;                        /* (rows, W, C) staged input */
        float *Y = X + p.xsz;                        /* (rows, W, F) staged output */
        float *zero = Y + p.ysz, *sink = zero + p.zsz;
        memset(zero, 0, p.zsz * sizeof(float));
        /* packed: U[e] once for all chunks (V is converted as it is made) */
        uint32_t *Up = (uint32_t *)(work + p.usz + (size_t)T * p.thr);
#pragma omp barrier
        if (p.packed) {
            for (int e = t; e < p.ne; e += nt) ddpm_bf16_pack_b(Up + e * p.pkeu, false, F, C, U + e * p.eu, F);
#pragma omp barrier
        }
#pragma omp for schedule(dynamic)
        for (int k = 0; k < nchunks; k++) {
            const int r0 = k * p.RC, r1 = imin(r0 + p.RC, rows), tiles = (r1 - r0) * TW;
            const size_t ev = estride((size_t)tiles * C), em = estride((size_t)tiles * F);
            segment s;
#ifdef DDPM_X86
            if (p.packed) { /* V straight into bf16 pairs (fits: pairs take at most C floats' space) */
                const size_t evp = estride((size_t)tiles * ((C + 1) / 2)); /* in pairs */
                for (int r = r0; next_segment(&s, &r, r0, r1, H, TH, TW, m);) {
                    const float *x = in + (size_t)s.n * C * HW + (size_t)s.ya * W;
                    planes_to_cl(X, x, HW, C, (size_t)(s.yb - s.ya) * W);
                    input_tiles_bf16((uint16_t *)V, 2 * evp, X, zero, &s, C, H, W, TW, m);
                }
                for (int e = 0; e < p.ne; e++)
                    ddpm_bf16_gemm_packed(tiles, F, C, (const uint32_t *)V + e * evp, false,
                                          Up + e * p.pkeu, M + e * em, F, false);
            } else
#endif
            {
                for (int r = r0; next_segment(&s, &r, r0, r1, H, TH, TW, m);) {
                    const float *x = in + (size_t)s.n * C * HW + (size_t)s.ya * W;
                    planes_to_cl(X, x, HW, C, (size_t)(s.yb - s.ya) * W);
                    input_tiles(V, ev, X, zero, &s, C, H, W, TW, m);
                }
                round_slices(d, V, p.ne, ev, (size_t)tiles * C);
                /* M[e] (tiles, F) = V[e] (tiles, C) @ U[e] (C, F) */
                for (int e = 0; e < p.ne; e++)
                    wgemm(d, isa, false, tiles, F, C, V + e * ev, C, U + e * p.eu, F, M + e * em, F,
                          false);
            }
            for (int r = r0; next_segment(&s, &r, r0, r1, H, TH, TW, m);) {
                output_tiles(Y, sink, M, em, bias, &s, F, H, W, TW, m);
                float *y = out + (size_t)s.n * F * HW + (size_t)m * s.th0 * W;
                cl_to_planes(y, HW, Y, F, (size_t)(s.yo - m * s.th0) * W, 0);
            }
        }
    }
}

void ddpm_winograd_backward(float *din, float *dweight, const float *dout, const float *in,
                            const float *weight, const ddpm_conv2d_desc *d, int T, float *work) {
    const int N = d->N, C = d->C, H = d->H, W = d->W, F = d->F;
    if (N <= 0 || C <= 0 || F <= 0 || H <= 0 || W <= 0) return;
    const plan p = make_plan(d, 2);
    const int TH = p.TH, TW = p.TW;
    const size_t HW = (size_t)H * W;
    const ddpm_isa isa = ddpm_isa_selected();
    float *U = work; /* (16, F, C): U[e]^T, so dV[e] = dYhat[e] @ U[e]^T is NN */

#pragma omp parallel num_threads(T) if (T > 1)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        if (din) weight_tiles(U, p.eu, 1, weight, C, F, F * t / nt, F * (t + 1) / nt);
        if (din) round_slices(d, U + (size_t)(F * t / nt) * C, NE, p.eu, (size_t)(F * (t + 1) / nt - F * t / nt) * C);
        float *V = work + p.usz + (size_t)t * p.thr; /* (16, tiles, C): V, then dV */
        float *D = V + p.vsz;                        /* (16, tiles, F): dYhat */
        float *X = D + p.msz;                        /* (rows, W, C) staged input, then din */
        float *Y = X + p.xsz;                        /* (rows, W, F) staged dout */
        float *zero = Y + p.ysz, *sink = zero + p.zsz;
        float *dU = sink + p.zsz; /* (16, C, F) this thread's partial */
        memset(zero, 0, p.zsz * sizeof(float));
        /* packed: U[e]^T once for all chunks, the other operands per product */
        uint32_t *Up = (uint32_t *)(work + p.usz + (size_t)T * p.thr);
        uint32_t *Ap = (uint32_t *)(dU + p.usz), *Bp = Ap + p.pka;
#pragma omp barrier
        if (p.packed && din) {
            for (int e = t; e < NE; e += nt) ddpm_bf16_pack_b(Up + e * p.pkeu, false, C, F, U + e * p.eu, C);
#pragma omp barrier
        }
        /* this thread's images, as tile rows [ra, rb) */
        const int ra = (int)((long long)N * t / nt) * TH;
        const int rb = (int)((long long)N * (t + 1) / nt) * TH;
        bool accumulate = false;
        for (int r0 = ra; r0 < rb; r0 += p.RC) {
            const int r1 = imin(r0 + p.RC, rb), tiles = (r1 - r0) * TW;
            const size_t ev = estride((size_t)tiles * C), ed = estride((size_t)tiles * F);
            segment s;
            /* packed: dYhat straight into bf16 pairs along F, edp pairs apart */
            const size_t edp = estride((size_t)tiles * ((F + 1) / 2));
            for (int r = r0; next_segment(&s, &r, r0, r1, H, TH, TW, 2);) {
                const float *x = in + (size_t)s.n * C * HW + (size_t)s.ya * W;
                planes_to_cl(X, x, HW, C, (size_t)(s.yb - s.ya) * W);
                input_tiles(V, ev, X, zero, &s, C, H, W, TW, 2);
                const float *g = dout + (size_t)s.n * F * HW + (size_t)2 * s.th0 * W;
                planes_to_cl(Y, g, HW, F, (size_t)(s.yo - 2 * s.th0) * W);
#ifdef DDPM_X86
                if (p.packed) {
                    dout_tiles_bf16((uint16_t *)D, 2 * edp, Y, zero, &s, F, H, W, TW);
                    continue;
                }
#endif
                dout_tiles(D, ed, Y, zero, &s, F, H, W, TW);
            }
            round_slices(d, V, NE, ev, (size_t)tiles * C);
            round_slices(d, D, NE, ed, (size_t)tiles * F);
            for (int e = 0; e < NE; e++) {
                float *Ve = V + e * ev;
                const float *De = D + e * ed;
#ifdef DDPM_X86
                if (p.packed) { /* the same two products on packed operands */
                    const uint32_t *De2 = (const uint32_t *)D + e * edp; /* (tiles, (F + 1) / 2) pairs */
                    ddpm_bf16_pack_a(Ap, true, C, tiles, Ve, C);
                    pair_rows_bf16(Bp, (const uint16_t *)De2, 2 * (size_t)((F + 1) / 2), tiles, F);
                    ddpm_bf16_gemm_packed(C, F, tiles, Ap, true, Bp, dU + e * p.eu, F, accumulate);
                    if (!din) continue;
                    ddpm_bf16_gemm_packed(tiles, C, F, De2, false, Up + e * p.pkeu, Ve, C, false);
                    continue;
                }
#endif
                /* dU[e] (C, F) += V[e]^T (C, tiles) @ dYhat[e] (tiles, F) */
                wgemm(d, isa, true, C, F, tiles, Ve, C, De, F, dU + e * p.eu, F, accumulate);
                /* dV[e] (tiles, C) = dYhat[e] (tiles, F) @ U[e]^T (F, C), over V[e] */
                if (din)
                    wgemm(d, isa, false, tiles, C, F, De, F, U + e * p.eu, C, Ve, C, false);
            }
            accumulate = true;
            if (!din) continue;
            for (int r = r0; next_segment(&s, &r, r0, r1, H, TH, TW, 2);) {
                const size_t P = (size_t)(s.yb - s.ya) * W;
                memset(X, 0, P * C * sizeof(float));
                din_tiles(X, sink, V, ev, &s, C, H, W, TW);
                cl_to_planes(din + (size_t)s.n * C * HW + (size_t)s.ya * W, HW, X, C, P, 1);
            }
        }
        if (!accumulate) memset(dU, 0, p.usz * sizeof(float)); /* no images */
#pragma omp barrier
        /* dU_0, and dU_u at + u*thr */
        const float *parts = work + p.usz + p.vsz + p.msz + p.xsz + p.ysz + 2 * p.zsz;
        weight_grad(dweight, parts, p.thr, p.eu, nt, C, F, C * t / nt, C * (t + 1) / nt);
    }
}
