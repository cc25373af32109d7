/* conv.c: 2-D convolution, one im2col + sgemm per image. See conv.h.
 *
 * 3x3 stride-1 pad-1 convs with enough channels (the UNet's ResBlock,
 * up-sampling and output convs) go to Winograd instead, in winograd.c:
 * F(2x2, 3x3) (2.25x fewer multiplies) for backward, and for forward F(4x4,
 * 3x3) (4x fewer) where it is faster, else F(2x2); use_winograd() and
 * winograd_tile() below decide. All the
 * rest of this file is the im2col path, which serves every other kernel,
 * stride and padding.
 *
 * Shape letters: N batch, C input channels, H W input size, F output channels,
 * K kernel, S stride, P padding, HO WO output size. Derived sizes:
 *   KK  = K*K     kernel taps, tap = ki*K + kj
 *   CKK = C*K*K   rows of an image's im2col matrix
 *   HW  = H*W, HWO = HO*WO   pixels per image in and out
 *
 * Every pass works image by image, straight on the NCHW tensors: the GEMM of
 * image n reads in[n] / dout[n] and writes out[n] / din[n] in place, so there
 * is no batch-folded matrix, no scatter or gather and no transposes. The
 * images are shared out over T threads (T = min(threads, processors, N));
 * each thread has its own im2col buffer in `work` (one image's worth, which
 * stays in L2) and calls a single-threaded GEMM, the tile kernels of
 * gemm_tile.c (ddpm_image_gemm, _nt). With T = 1 there is no parallel region
 * and those hand the product to OpenBLAS, which threads it itself.
 *
 * The im2col matrix is tap-major: row tap*C + c, column oh*WO + ow holds
 * x[c, oh*S - P + ki, ow*S - P + kj] (0 in the padding). For a "same" conv
 * (S 1, HO = H, WO = W: the UNet's 3x3 pad 1) the C rows of one tap are then
 * the whole image shifted by (ki-P)*W + (kj-P): one long memcpy, then zeros
 * written over the few entries that fall in the padding. Stride 2 with
 * HO = ceil(H/2) (the UNet's 3x3 pad 1 downsampling) first splits the image
 * into its four (row, column) parity phases, each (C, HO, WO); every tap is
 * then a shifted copy of one phase. The weight is permuted to match the
 * tap-major rows, wt (F, KK, C), once per call.
 *
 * Forward, per image:
 *   col (CKK, HWO)  = im2col(in[n])
 *   out[n] (F, HWO) = wt (F, CKK) @ col + bias
 * Backward, per image (thread t owns the contiguous images [N*t/T, N*(t+1)/T)):
 *   col (CKK, HWO)  = im2col(in[n])
 *   dw_t (F, CKK)  += dout[n] (F, HWO) @ col^T        (dw_t tap-major, in work)
 *   din[n]         += the transposed conv of dout[n], either
 *     stride 1, F <= C:  col (F*KK, HW) = im2col(dout[n]) with padding K-1-P
 *                        din[n] (C, HW) += wflip (C, F*KK) @ col
 *                        wflip[c, tap, f] = weight[f, c, KK-1-tap]
 *                        (a plain convolution: no col2im, the GEMM adds in place)
 *     otherwise:         col (CKK, HWO) = wt^T (CKK, F) @ dout[n]
 *                        din[n] += col2im(col)
 *   dweight (F, C, KK) += dw_0 + dw_1 + ... + dw_{T-1}, in thread order
 *   dbias (F) += sums of dout over N, HO, WO, one thread per f, in double.
 *
 * Direct 1x1 path (K=1, S=1, P=0): each image (C, H*W) already is its own
 * im2col matrix, so the GEMMs read the NCHW tensors directly. Thread 0
 * accumulates dweight in place, the others into partials added after.
 *
 * Reproducibility: bit for bit for a given thread count. With T > 1 out and
 * din do not depend on which thread runs which image (each image is the same
 * sequence of operations); dweight is summed from the per-thread partials in
 * thread order, so across thread counts it differs by float reassociation.
 * With T = 1 OpenBLAS may thread a GEMM itself, which can change rounding.
 * Convs under DDPM_PAR_MIN_FLOPS always run with T = 1.
 */
#include "ddpm/conv.h"

#include <omp.h>
#include <string.h>

#include "ddpm/tensor.h"
#include "core/util.h"
#include "nn/gemm_tile.h"
#include "nn/winograd.h"

static int is_direct_1x1(const ddpm_conv2d_desc *d) { return d->K == 1 && d->S == 1 && d->P == 0; }

/* Winograd (winograd.c) for 3x3 stride-1 pad-1 convs where it is faster: its
 * transforms cost ~ C + F per pixel and it saves ~ C * F multiply-adds, while
 * im2col's GEMM is slow with few output channels. Measured, N = 64, 2 threads,
 * 28x28, forward + backward time im2col / Winograd: 32->32 2.4, 16->8 1.1,
 * 8->16 0.9, 8->8 0.8, 32->1 1.1, 64->3 3.1, 16->1 0.8, 1->32 0.3 (the UNet's
 * input conv stays on im2col, its output conv 32->1 takes Winograd). The
 * choice never depends on N (the workspace contract). */
static int use_winograd(const ddpm_conv2d_desc *d) {
    if (d->algo == DDPM_CONV_IM2COL || !ddpm_winograd_applies(d)) return 0;
    if (d->algo == DDPM_CONV_WINOGRAD || d->algo == DDPM_CONV_WINOGRAD4) return 1;
    return d->C >= 32 || (d->C >= 8 && d->F >= 8 && d->C * d->F > 128);
}

/* Output tile size of the Winograd forward, F(m x m, 3x3): 4 where F(4x4) is
 * faster, else 2 (the backward is always F(2x2)). Measured forward time
 * F(2x2) / F(4x4), N = 64, 1 thread | 2 threads: 28x28 32->32 1.25 | 1.29,
 * 64->32 1.43 | 1.26, 96->32 1.29 | 1.45, 64->64 1.44 | 1.35; 14x14 32->64
 * 1.04 | 1.08, 64->64 1.11 | 1.10, 96->64 1.09 | 0.98, 128->64 1.09 | 1.02;
 * 7x7 64->64 1.28 | 1.04, 128->64 1.22 | 1.01; 28x28 32->1 0.85 | 1.07
 * (F(4x4)'s transforms run 8 channels at a time: F = 1 wastes 7/8).
 * Depends on the shape and algo only: never on N, nor on training vs
 * inference (their forwards must agree bit for bit). */
static int winograd_tile(const ddpm_conv2d_desc *d) {
    if (d->algo == DDPM_CONV_WINOGRAD4) return 4;
    if (d->algo == DDPM_CONV_WINOGRAD) return 2;
    return d->C >= 32 && d->F >= 32 ? 4 : 2;
}

/* din via the transposed conv (im2col of dout, F*KK rows) instead of col2im
 * (a CKK-row GEMM result): chosen when it moves no more data, F <= C. */
static int use_transposed(const ddpm_conv2d_desc *d) {
    return !is_direct_1x1(d) && d->S == 1 && d->P <= d->K - 1 && d->F <= d->C;
}


/* Threads a pass uses (threads = omp_get_max_threads()), or sizes for
 * (threads = 0): never more than the processors nor than the images, and 1
 * for small convs. The size thus never decreases with N, and a pass never
 * uses more threads than its workspace was sized for. */
static int conv_team(const ddpm_conv2d_desc *d, int HO, int WO, int threads) {
    double flops = 2.0 * d->N * d->F * d->C * d->K * d->K * HO * WO;
    if (flops < DDPM_PAR_MIN_FLOPS) return 1;
    int t = omp_get_num_procs();
    if (threads > 0 && threads < t) t = threads;
    if (t > d->N) t = d->N;
    return t < 1 ? 1 : t;
}

/* Stride 2 with HO = ceil(H/2), WO = ceil(W/2) (the UNet's 3x3 pad 1
 * downsampling): split the input into its four phases, then every tap is a
 * shifted copy of one phase, as in a same conv. */
static int is_phased(int S, int H, int W, int HO, int WO) {
    return S == 2 && HO == (H + 1) / 2 && WO == (W + 1) / 2;
}

/* Floats of scratch im2col / col2im need besides col: the phases. */
static size_t phase_floats(int C, int S, int H, int W, int HO, int WO) {
    return is_phased(S, H, W, HO, WO) ? 4 * (size_t)C * HO * WO : 0;
}

/* The pieces of `work` for a pass with T threads, in this order:
 *   wt       wsz floats     permuted weight (F, KK, C) or wflip (C, KK, F)
 *   col[t]   colsz floats   im2col buffer of thread t, t < T
 *   dw[t]    dwsz floats    (F, KK, C) partial dweight of thread t, t < T
 * A direct 1x1 conv has no wt and no col, and only dw[1..T-1]. */
typedef struct {
    size_t wsz, colsz, dwsz;
    size_t phoff; /* offset in col[t] of the stride-2 phases (after the matrix) */
    int direct;
} work_plan;

static work_plan plan_work(const ddpm_conv2d_desc *d, int HO, int WO) {
    work_plan w;
    size_t KK = (size_t)d->K * d->K;
    w.direct = is_direct_1x1(d);
    w.dwsz = ddpm_round16((size_t)d->F * d->C * KK);
    w.wsz = w.direct ? 0 : w.dwsz;
    size_t col = (size_t)d->C * KK * HO * WO;
    if (use_transposed(d) && (size_t)d->F * KK * d->H * d->W > col)
        col = (size_t)d->F * KK * d->H * d->W;
    w.phoff = ddpm_round16(col);
    w.colsz = w.direct ? 0 : w.phoff + ddpm_round16(phase_floats(d->C, d->S, d->H, d->W, HO, WO));
    return w;
}

static size_t plan_total(const work_plan *w, int T) {
    return w->wsz + (size_t)T * w->colsz + (size_t)(w->direct ? T - 1 : T) * w->dwsz;
}

size_t ddpm_conv2d_workspace(const ddpm_conv2d_desc *d) {
    int HO = ddpm_conv2d_out(d->H, d->K, d->S, d->P), WO = ddpm_conv2d_out(d->W, d->K, d->S, d->P);
    if (d->N <= 0 || d->F <= 0 || HO <= 0 || WO <= 0) return 0;
    if (use_winograd(d))
        return ddpm_winograd_workspace(d, winograd_tile(d), conv_team(d, HO, WO, 0));
    work_plan w = plan_work(d, HO, WO);
    return plan_total(&w, conv_team(d, HO, WO, 0));
}

/* The outputs o in [*lo, *hi) of a row of `nout` outputs whose input index
 * o*S + off lies inside [0, n): the rest read zero padding. */
static void valid_range(int off, int S, int n, int nout, int *lo, int *hi) {
    int a = off >= 0 ? 0 : (-off + S - 1) / S;
    int b = n - 1 - off >= 0 ? (n - 1 - off) / S + 1 : 0;
    if (b > nout) b = nout;
    if (a > b) a = b;
    *lo = a;
    *hi = b;
}

/* dst[i] = src[i], i < n, in pieces of `piece` floats (a few KiB): a long
 * shifted copy otherwise takes glibc's `rep movsb` path, which is slow when
 * source and destination are misaligned relative to each other (here they
 * are, by the shift). `piece` is a run-time value so that the compiler calls
 * memcpy rather than expanding it inline as `rep movsq`. */
static void copy_floats(float *restrict dst, const float *restrict src, size_t n, size_t piece) {
    for (size_t i = 0; i < n; i += piece)
        memcpy(dst + i, src + i, (n - i < piece ? n - i : piece) * sizeof(float));
}

/* blk (C, H, W) holds planes shifted by (dy, dx) (blk[c, h, w] comes from
 * [c, h+dy, w+dx]): writes 0 over the entries whose source is outside. */
static void zero_padding(float *blk, int C, int H, int W, int dy, int dx) {
    int r0, r1, c0, c1; /* valid rows [r0, r1), columns [c0, c1) */
    valid_range(dy, 1, H, H, &r0, &r1);
    valid_range(dx, 1, W, W, &c0, &c1);
    const size_t HW = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        float *pl = blk + (size_t)c * HW; /* (H, W) */
        for (size_t i = 0; i < (size_t)r0 * W; i++) pl[i] = 0.0f;
        for (size_t i = (size_t)r1 * W; i < HW; i++) pl[i] = 0.0f;
        /* column by column: short strided loops, not a memset call per row */
        for (int ow = 0; ow < c0; ow++)
            for (int oh = r0; oh < r1; oh++) pl[(size_t)oh * W + ow] = 0.0f;
        for (int ow = c1; ow < W; ow++)
            for (int oh = r0; oh < r1; oh++) pl[(size_t)oh * W + ow] = 0.0f;
    }
}

/* blk (C, H, W) [c, h, w] = src (C, H, W) [c, h+dy, w+dx], 0 outside: one
 * contiguous copy of the whole tensor shifted by dy*W + dx, then zeros. */
static void shift_copy(float *restrict blk, const float *restrict src, int C, int H, int W,
                       int dy, int dx) {
    const long CHW = (long)C * H * W;
    const size_t piece = (size_t)W * (W < 1024 ? 1024 / W : 1); /* whole rows, <= 4 KiB */
    long delta = (long)dy * W + dx;
    long lo = delta < 0 ? -delta : 0, hi = delta > 0 ? CHW - delta : CHW;
    if (hi < lo) hi = lo = 0;
    memset(blk, 0, (size_t)lo * sizeof(float));
    copy_floats(blk + lo, src + lo + delta, (size_t)(hi - lo), piece);
    memset(blk + hi, 0, (size_t)(CHW - hi) * sizeof(float));
    zero_padding(blk, C, H, W, dy, dx);
}

/* The adjoint of shift_copy: dst (C, H, W) [c, h+dy, w+dx] += blk [c, h, w]
 * where the source is inside. blk is scratch: its padding entries are zeroed
 * first, so the rest is one contiguous shifted add. */
static void shift_add(float *restrict dst, float *restrict blk, int C, int H, int W, int dy,
                      int dx) {
    const long CHW = (long)C * H * W;
    zero_padding(blk, C, H, W, dy, dx);
    long delta = (long)dy * W + dx;
    long lo = delta < 0 ? -delta : 0, hi = delta > 0 ? CHW - delta : CHW;
    for (long q = lo; q < hi; q++) dst[q + delta] += blk[q];
}

/* Tap offset ki - P = 2*d + p with phase p in {0, 1}. */
static void phase_of(int off, int *p, int *d) {
    *p = off & 1;
    *d = (off - *p) / 2;
}

/* ph (4, C, HO, WO) [p*2 + q, c, i, j] = x (C, H, W) [c, 2i+p, 2j+q], 0 past the edge. */
static void deinterleave(float *restrict ph, const float *restrict x, int C, int H, int W,
                         int HO, int WO) {
    const size_t HWO = (size_t)HO * WO, CHWO = (size_t)C * HWO;
    const int w2 = W / 2; /* columns j with 2j+1 < W */
    for (int c = 0; c < C; c++)
        for (int i = 0; i < HO; i++)
            for (int p = 0; p < 2; p++) {
                float *d0 = ph + (size_t)p * 2 * CHWO + c * HWO + (size_t)i * WO; /* (WO) */
                float *d1 = d0 + CHWO;
                int ih = 2 * i + p;
                if (ih >= H) {
                    for (int j = 0; j < WO; j++) d0[j] = d1[j] = 0.0f;
                    continue;
                }
                const float *r = x + ((size_t)c * H + ih) * W; /* (W) */
                for (int j = 0; j < w2; j++) {
                    d0[j] = r[2 * j];
                    d1[j] = r[2 * j + 1];
                }
                for (int j = w2; j < WO; j++) {
                    d0[j] = r[2 * j];
                    d1[j] = 0.0f;
                }
            }
}

/* dx (C, H, W) [c, 2i+p, 2j+q] += ph (4, C, HO, WO) [p*2 + q, c, i, j], inside. */
static void interleave_add(float *restrict dx, const float *restrict ph, int C, int H, int W,
                           int HO, int WO) {
    const size_t HWO = (size_t)HO * WO, CHWO = (size_t)C * HWO;
    const int w2 = W / 2;
    for (int c = 0; c < C; c++)
        for (int i = 0; i < HO; i++)
            for (int p = 0; p < 2; p++) {
                int ih = 2 * i + p;
                if (ih >= H) continue;
                const float *s0 = ph + (size_t)p * 2 * CHWO + c * HWO + (size_t)i * WO;
                const float *s1 = s0 + CHWO;
                float *r = dx + ((size_t)c * H + ih) * W; /* (W) */
                for (int j = 0; j < w2; j++) {
                    r[2 * j] += s0[j];
                    r[2 * j + 1] += s1[j];
                }
                for (int j = w2; j < WO; j++) r[2 * j] += s0[j];
            }
}

/* col (KK*C, HO*WO) <- x (C, H, W), one image, tap-major (see the top).
 * ph: phase_floats() floats of scratch. */
static void im2col(float *restrict col, float *restrict ph, const float *restrict x, int C, int H,
                   int W, int K, int S, int P, int HO, int WO) {
    const size_t HWO = (size_t)HO * WO, CHWO = (size_t)C * HWO;
    if (S == 1 && HO == H && WO == W) {
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++)
                shift_copy(col + (size_t)(ki * K + kj) * CHWO, x, C, H, W, ki - P, kj - P);
        return;
    }
    if (is_phased(S, H, W, HO, WO)) {
        deinterleave(ph, x, C, H, W, HO, WO);
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                int p, q, di, dj;
                phase_of(ki - P, &p, &di);
                phase_of(kj - P, &q, &dj);
                shift_copy(col + (size_t)(ki * K + kj) * CHWO, ph + (size_t)(p * 2 + q) * CHWO, C,
                           HO, WO, di, dj);
            }
        return;
    }
    for (int ki = 0; ki < K; ki++) {
        int oh_lo, oh_hi;
        valid_range(ki - P, S, H, HO, &oh_lo, &oh_hi);
        for (int kj = 0; kj < K; kj++) {
            int ow_lo, ow_hi;
            valid_range(kj - P, S, W, WO, &ow_lo, &ow_hi);
            const int off = kj - P; /* iw = ow*S + off */
            for (int c = 0; c < C; c++) {
                const float *xc = x + (size_t)c * H * W;                  /* (H, W) */
                float *dst = col + ((size_t)(ki * K + kj) * C + c) * HWO; /* (HO, WO) */
                for (int oh = 0; oh < HO; oh++) {
                    float *drow = dst + (size_t)oh * WO;
                    if (oh < oh_lo || oh >= oh_hi) {
                        for (int ow = 0; ow < WO; ow++) drow[ow] = 0.0f;
                        continue;
                    }
                    const float *srow = xc + (size_t)(oh * S - P + ki) * W; /* (W) */
                    for (int ow = 0; ow < ow_lo; ow++) drow[ow] = 0.0f;
                    for (int ow = ow_lo; ow < ow_hi; ow++) drow[ow] = srow[ow * S + off];
                    for (int ow = ow_hi; ow < WO; ow++) drow[ow] = 0.0f;
                }
            }
        }
    }
}

/* dx (C, H, W) += col2im(col (KK*C, HO*WO)), one image: the adjoint of
 * im2col, adding in a fixed (tap, c, oh, ow) order. col is scratch and is
 * overwritten; ph: phase_floats() floats of scratch. */
static void col2im_add(float *restrict dx, float *restrict col, float *restrict ph, int C, int H,
                       int W, int K, int S, int P, int HO, int WO) {
    const size_t HWO = (size_t)HO * WO, CHWO = (size_t)C * HWO;
    if (S == 1 && HO == H && WO == W) {
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++)
                shift_add(dx, col + (size_t)(ki * K + kj) * CHWO, C, H, W, ki - P, kj - P);
        return;
    }
    if (is_phased(S, H, W, HO, WO)) {
        memset(ph, 0, 4 * CHWO * sizeof(float));
        for (int ki = 0; ki < K; ki++)
            for (int kj = 0; kj < K; kj++) {
                int p, q, di, dj;
                phase_of(ki - P, &p, &di);
                phase_of(kj - P, &q, &dj);
                shift_add(ph + (size_t)(p * 2 + q) * CHWO, col + (size_t)(ki * K + kj) * CHWO, C,
                          HO, WO, di, dj);
            }
        interleave_add(dx, ph, C, H, W, HO, WO);
        return;
    }
    for (int ki = 0; ki < K; ki++) {
        int oh_lo, oh_hi;
        valid_range(ki - P, S, H, HO, &oh_lo, &oh_hi);
        for (int kj = 0; kj < K; kj++) {
            int ow_lo, ow_hi;
            valid_range(kj - P, S, W, WO, &ow_lo, &ow_hi);
            const int off = kj - P;
            for (int c = 0; c < C; c++) {
                float *plane = dx + (size_t)c * H * W;                          /* (H, W) */
                const float *src = col + ((size_t)(ki * K + kj) * C + c) * HWO; /* (HO, WO) */
                for (int oh = oh_lo; oh < oh_hi; oh++) {
                    float *drow = plane + (size_t)(oh * S - P + ki) * W; /* (W) */
                    const float *srow = src + (size_t)oh * WO;           /* (WO) */
                    for (int ow = ow_lo; ow < ow_hi; ow++) drow[ow * S + off] += srow[ow];
                }
            }
        }
    }
}

/* Sum of x[n*stride + i] over n < N, i < len, in double: 32 lanes (so the
 * loop vectorizes without reassociation, 4 vectors of independent
 * adds), then the lanes in order. */
static double sum_planes(const float *x, int N, size_t stride, size_t len) {
    double lane[32] = {0}; /* 4 vectors of 8: independent add chains */
    for (int n = 0; n < N; n++) {
        const float *r = x + (size_t)n * stride;
        size_t i = 0;
        for (; i + 32 <= len; i += 32)
            for (int j = 0; j < 32; j++) lane[j] += (double)r[i + j];
        for (; i < len; i++) lane[i & 31] += (double)r[i];
    }
    double s = 0.0;
    for (int j = 0; j < 32; j++) s += lane[j];
    return s;
}

/* One product of an image: ddpm_image_gemm (tb false) or _nt (tb true), or
 * with bf16 operands (d->prec). */
static void conv_gemm(const ddpm_conv2d_desc *d, bool ta, bool tb, int M, int N, int K,
                      const float *A, int lda, const float *B, int ldb, float *C, int ldc,
                      bool acc) {
    if (d->prec == DDPM_PREC_BF16)
        ddpm_gemm_bf16(ta, tb, M, N, K, 1.0f, A, lda, B, ldb, acc ? 1.0f : 0.0f, C, ldc);
    else if (tb)
        ddpm_image_gemm_nt(M, N, K, A, lda, B, ldb, C, ldc, acc);
    else
        ddpm_image_gemm(ta, M, N, K, A, lda, B, ldb, C, ldc, acc);
}

/* y (F, HW) += bias (F), one image. */
static void add_bias(float *y, const float *bias, int F, size_t HW) {
    for (int f = 0; f < F; f++) {
        float b = bias[f], *yf = y + (size_t)f * HW;
        for (size_t i = 0; i < HW; i++) yf[i] += b;
    }
}

void ddpm_conv2d_forward(float *out, const float *in, const float *weight, const float *bias,
                         const ddpm_conv2d_desc *d, float *work) {
    const int N = d->N, C = d->C, H = d->H, W = d->W, F = d->F, K = d->K, S = d->S, P = d->P;
    const int HO = ddpm_conv2d_out(H, K, S, P), WO = ddpm_conv2d_out(W, K, S, P);
    if (N <= 0 || F <= 0 || HO <= 0 || WO <= 0) return;
    if (use_winograd(d)) {
        ddpm_winograd_forward(out, in, weight, bias, d, winograd_tile(d),
                              conv_team(d, HO, WO, omp_get_max_threads()), work);
        return;
    }
    const size_t HW = (size_t)H * W, HWO = (size_t)HO * WO;
    const int KK = K * K, CKK = C * KK;
    const work_plan wp = plan_work(d, HO, WO);
    const int T = conv_team(d, HO, WO, omp_get_max_threads());
    float *wt = wp.direct ? NULL : work; /* (F, KK, C) */

    /* Every image is independent: dynamic scheduling balances a busy core. */
#pragma omp parallel num_threads(T) if (T > 1)
    {
        if (!wp.direct) {
#pragma omp for schedule(static)
            for (int f = 0; f < F; f++)
                for (int c = 0; c < C; c++)
                    for (int k = 0; k < KK; k++)
                        wt[((size_t)f * KK + k) * C + c] = weight[((size_t)f * C + c) * KK + k];
        }
        float *col = wp.direct ? NULL : work + wp.wsz + (size_t)omp_get_thread_num() * wp.colsz;
        const float *wm = wp.direct ? weight : wt; /* (F, CKK) */
#pragma omp for schedule(dynamic)
        for (int n = 0; n < N; n++) {
            const float *x = in + (size_t)n * C * HW; /* (C, H, W) */
            float *y = out + (size_t)n * F * HWO;     /* (F, HO, WO) */
            if (!wp.direct) {
                im2col(col, col + wp.phoff, x, C, H, W, K, S, P, HO, WO);
                x = col; /* (CKK, HWO) */
            }
            /* y (F, HWO) = wm (F, CKK) @ x (CKK, HWO) */
            conv_gemm(d, false, false, F, (int)HWO, CKK, wm, CKK, x, (int)HWO, y, (int)HWO, false);
            if (bias) add_bias(y, bias, F, HWO);
        }
    }
}

/* dbias (F) += dout (N, F, HWO) summed per channel (sum_planes, fixed order),
 * as a worksharing loop of the enclosing parallel region. */
static void bias_backward(float *dbias, const float *dout, int N, int F, size_t HWO) {
#pragma omp for schedule(static) nowait
    for (int f = 0; f < F; f++) dbias[f] += (float)sum_planes(dout + (size_t)f * HWO, N, (size_t)F * HWO, HWO);
}

/* Everything one backward pass (outside Winograd) shares. */
typedef struct {
    float *din, *dweight;       /* din (N, C, H, W) or NULL; dweight (F, C, K, K) */
    const float *dout, *in, *weight;
    const ddpm_conv2d_desc *d;
    int HO, WO, KK, CKK, FKK;
    size_t HW, HWO;
    int direct, transposed;
    work_plan wp;
    float *wt;    /* (F, KK, C) or (C, KK, F) */
    float *cols;  /* (T, colsz) */
    float *parts; /* (T or T-1, F, KK, C): per-thread dweight partials */
} conv_bwd;

/* The weight in the layout the din GEMMs read (a worksharing loop). */
static void weight_layout(const conv_bwd *a) {
    const int C = a->d->C, F = a->d->F, KK = a->KK;
    float *wt = a->wt;
    const float *weight = a->weight;
    if (a->transposed) {
        /* wflip (C, KK, F) [c, tap, f] = weight (F, C, KK) [f, c, KK-1-tap] */
#pragma omp for schedule(static)
        for (int c = 0; c < C; c++)
            for (int k = 0; k < KK; k++)
                for (int f = 0; f < F; f++)
                    wt[((size_t)c * KK + k) * F + f] = weight[((size_t)f * C + c) * KK + (KK - 1 - k)];
    } else if (!a->direct && a->din) {
        /* wt (F, KK, C) [f, tap, c] = weight (F, C, KK) [f, c, tap] */
#pragma omp for schedule(static)
        for (int f = 0; f < F; f++)
            for (int c = 0; c < C; c++)
                for (int k = 0; k < KK; k++) wt[((size_t)f * KK + k) * C + c] = weight[((size_t)f * C + c) * KK + k];
    }
}

/* din (C, H, W) of image n += the conv transpose of g (F, HO, WO), through
 * col, a thread's im2col buffer. */
static void input_backward(const conv_bwd *a, float *dx, const float *g, float *col) {
    const ddpm_conv2d_desc *d = a->d;
    const int C = d->C, H = d->H, W = d->W, F = d->F, K = d->K, S = d->S, P = d->P;
    const int HW = (int)a->HW, HWO = (int)a->HWO;
    if (a->direct) {
        /* dx (C, HW) += weight^T (C, F) @ g (F, HW) */
        conv_gemm(d, true, false, C, HW, F, a->weight, C, g, HW, dx, HW, true);
    } else if (a->transposed) {
        /* col (KK*F, HW) = im2col(g) with padding K-1-P; dx += wflip @ col */
        im2col(col, NULL, g, F, a->HO, a->WO, K, 1, K - 1 - P, H, W);
        conv_gemm(d, false, false, C, HW, a->FKK, a->wt, a->FKK, col, HW, dx, HW, true);
    } else {
        /* col (CKK, HWO) = wt^T (CKK, F) @ g (F, HWO); dx += col2im(col) */
        conv_gemm(d, true, false, a->CKK, HWO, F, a->wt, a->CKK, g, HWO, col, HWO, false);
        col2im_add(dx, col, col + a->wp.phoff, C, H, W, K, S, P, a->HO, a->WO);
    }
}

/* Thread t of nt: its contiguous share of the images, into its dweight
 * partial (or dweight itself: direct, t = 0) and straight into din. */
static void images_backward(const conv_bwd *a, int t, int nt) {
    const ddpm_conv2d_desc *d = a->d;
    const int N = d->N, C = d->C, H = d->H, W = d->W, F = d->F, CKK = a->CKK;
    const size_t HW = a->HW, HWO = a->HWO;
    float *col = a->direct ? NULL : a->cols + (size_t)t * a->wp.colsz;
    float *dw; /* (F, CKK): tap-major partial, or dweight itself (direct, t = 0) */
    if (a->direct)
        dw = t == 0 ? a->dweight : a->parts + (size_t)(t - 1) * a->wp.dwsz;
    else
        dw = a->parts + (size_t)t * a->wp.dwsz;
    float beta = a->direct && t == 0 ? 1.0f : 0.0f;
    const int n0 = (int)((long long)N * t / nt), n1 = (int)((long long)N * (t + 1) / nt);
    if (n0 == n1 && beta == 0.0f) memset(dw, 0, (size_t)F * CKK * sizeof(float));
    for (int n = n0; n < n1; n++) {
        const float *x = a->in + (size_t)n * C * HW;          /* (C, H, W) */
        const float *g = a->dout + (size_t)n * F * HWO;       /* (F, HO, WO) */
        float *dx = a->din ? a->din + (size_t)n * C * HW : NULL; /* (C, H, W) */
        if (!a->direct) {
            im2col(col, col + a->wp.phoff, x, C, H, W, d->K, d->S, d->P, a->HO, a->WO);
            x = col; /* (CKK, HWO) */
        }
        /* dw (F, CKK) += g (F, HWO) @ x^T (HWO, CKK) */
        conv_gemm(d, false, true, F, CKK, (int)HWO, g, (int)HWO, x, (int)HWO, dw, CKK, beta != 0.0f);
        beta = 1.0f;
        if (dx) input_backward(a, dx, g, col);
    }
}

/* dweight += the nt threads' partials, in thread order (a worksharing loop). */
static void reduce_dweight(const conv_bwd *a, int nt) {
    const int C = a->d->C, F = a->d->F, KK = a->KK, CKK = a->CKK;
    float *dweight = a->dweight;
    const float *parts = a->parts;
    if (a->direct && nt > 1) {
        /* dweight += dw_1 + ... + dw_{nt-1}, in that order */
#pragma omp for schedule(static)
        for (int i = 0; i < F * CKK; i++) {
            float acc = dweight[i];
            for (int u = 1; u < nt; u++) acc += parts[(size_t)(u - 1) * a->wp.dwsz + i];
            dweight[i] = acc;
        }
    } else if (!a->direct) {
        /* dweight (F, C, KK) [f, c, tap] += sum over u of dw_u (F, KK, C) [f, tap, c] */
#pragma omp for schedule(static)
        for (int f = 0; f < F; f++)
            for (int c = 0; c < C; c++)
                for (int k = 0; k < KK; k++) {
                    size_t i = ((size_t)f * KK + k) * C + c;
                    float acc = dweight[((size_t)f * C + c) * KK + k];
                    for (int u = 0; u < nt; u++) acc += parts[(size_t)u * a->wp.dwsz + i];
                    dweight[((size_t)f * C + c) * KK + k] = acc;
                }
    }
}

void ddpm_conv2d_backward(float *din, float *dweight, float *dbias, const float *dout,
                          const float *in, const float *weight, const ddpm_conv2d_desc *d,
                          float *work) {
    const int N = d->N, F = d->F, K = d->K, S = d->S, P = d->P;
    const int HO = ddpm_conv2d_out(d->H, K, S, P), WO = ddpm_conv2d_out(d->W, K, S, P);
    if (N <= 0 || F <= 0 || HO <= 0 || WO <= 0) return;
    const size_t HWO = (size_t)HO * WO;
    if (use_winograd(d)) {
        const int T = conv_team(d, HO, WO, omp_get_max_threads());
        ddpm_winograd_backward(din, dweight, dout, in, weight, d, T, work);
        if (dbias) {
#pragma omp parallel num_threads(T) if (T > 1)
            bias_backward(dbias, dout, N, F, HWO);
        }
        return;
    }
    conv_bwd a = {din, dweight, dout, in, weight, d, HO, WO, K * K, d->C * K * K, F * K * K,
                  (size_t)d->H * d->W, HWO, is_direct_1x1(d), use_transposed(d) && din, plan_work(d, HO, WO),
                  NULL, NULL, NULL};
    /* A direct 1x1 conv may get work == NULL (its workspace is 0 when only
     * one thread fits): it then runs the images in order, BLAS threading each. */
    const int T = a.direct && !work ? 1 : conv_team(d, HO, WO, omp_get_max_threads());
    a.wt = a.direct ? NULL : work;
    a.cols = a.direct ? NULL : work + a.wp.wsz;
    a.parts = a.direct ? work : a.cols + (size_t)T * a.wp.colsz;

#pragma omp parallel num_threads(T) if (T > 1)
    {
        const int nt = omp_get_num_threads(), t = omp_get_thread_num();
        if (dbias) bias_backward(dbias, dout, N, F, HWO);
        weight_layout(&a);
        images_backward(&a, t, nt);
#pragma omp barrier
        reduce_dweight(&a, nt);
    }
}

