/* winograd_none.c: TEMPORARY stand-in for winograd.c, built (instead of it)
 * only by a compiler without GCC's __builtin_shuffle, i.e. clang, until the
 * SIMD work of issue #9 gives winograd.c a portable fallback (CMakeLists.txt
 * picks the file). ddpm_winograd_applies() is false for every conv, so
 * conv.c's dispatch sends even a forced DDPM_CONV_WINOGRAD(4) through
 * im2col; the other entry points are then never called. */
#include "nn/winograd.h"

int ddpm_winograd_applies(const ddpm_conv2d_desc *d) {
    (void)d;
    return 0;
}

size_t ddpm_winograd_workspace(const ddpm_conv2d_desc *d, int m, int T) {
    (void)d, (void)m, (void)T;
    return 0;
}

void ddpm_winograd_forward(float *out, const float *in, const float *weight, const float *bias,
                           const ddpm_conv2d_desc *d, int m, int T, float *work) {
    (void)out, (void)in, (void)weight, (void)bias, (void)d, (void)m, (void)T, (void)work;
}

void ddpm_winograd_backward(float *din, float *dweight, const float *dout, const float *in,
                            const float *weight, const ddpm_conv2d_desc *d, int T, float *work) {
    (void)din, (void)dweight, (void)dout, (void)in, (void)weight, (void)d, (void)T, (void)work;
}
