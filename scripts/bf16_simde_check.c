/* bf16_simde_check.c: runs gemm_bf16.c's AVX512_BF16 path on a machine
 * without AVX512_BF16, through SIMDe's portable versions of the intrinsics
 * (Debian libsimde-dev), against a double-precision reference of the
 * bf16-rounded operands: |C - ref| <= (K + 2) 2^-24 (sum |a'b'| + |c0|) per
 * element (the float accumulation only; see tests/test_bf16.c), padding of
 * C untouched, a NaN operand kept. Built and run by scripts/bf16_simde_check.sh,
 * which makes the SIMDe copy of gemm_bf16.c (emu_* names). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <stdbool.h>
#include "nn/bf16.h"
#include "nn/gemm_tile.h"
void emu_tile_gemm_bf16(ddpm_bf16_isa isa, bool ta, bool tb, int M, int N, int K, const float *A, int lda,
                        const float *B, int ldb, float *C, int ldc, bool acc);
static float rn(unsigned *s) { *s = *s * 1664525u + 1013904223u; return ((*s >> 8) / 16777216.0f) * 2 - 1; }
int main(void) {
    unsigned seed = 1;
    const int shapes[][3] = {{1,1,1},{7,3,1},{5,17,2},{13,64,33},{6,64,64},{37,33,5},{100,96,64},{63,65,127},{25,48,9},{200,1,32},{3,200,7},{49,15,300},{9,80,1},{12,130,31},{64,256,96}};
    int bad = 0, checked = 0;
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (int op = 0; op < 4; op++)
            for (int acc = 0; acc < 2; acc++) {
                int M = shapes[s][0], N = shapes[s][1], K = shapes[s][2];
                bool ta = op & 1, tb = op & 2;
                int lda = (ta ? M : K) + 3, ldb = (tb ? K : N) + 3, ldc = N + 3;
                size_t na = (size_t)(ta ? K : M) * lda, nb = (size_t)(tb ? N : K) * ldb, nc = (size_t)M * ldc;
                float *A = malloc(na * 4), *B = malloc(nb * 4), *C = malloc(nc * 4), *C0 = malloc(nc * 4);
                for (size_t i = 0; i < na; i++) A[i] = rn(&seed);
                for (size_t i = 0; i < nb; i++) B[i] = rn(&seed);
                for (size_t i = 0; i < nc; i++) C0[i] = C[i] = rn(&seed);
                if (s == 3 && op == 0) A[0] = NAN; /* one NaN case */
                emu_tile_gemm_bf16(DDPM_BF16_AVX512, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, acc);
                for (int i = 0; i < M; i++) {
                    for (int j = 0; j < N; j++) {
                        double ex = 0, mag = 0;
                        for (int k = 0; k < K; k++) {
                            double a = ddpm_bf16_round(ta ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                            double b = ddpm_bf16_round(tb ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j]);
                            ex += a * b, mag += fabs(a * b);
                        }
                        double c0 = acc ? C0[(size_t)i * ldc + j] : 0;
                        double got = C[(size_t)i * ldc + j];
                        checked++;
                        if (isnan(ex)) { if (!isnan(got)) { bad++; printf("NaN lost\n"); } continue; }
                        if (!(fabs(got - ex - c0) <= (K + 2) * 0x1p-24 * (mag + fabs(c0)) + 1e-37)) {
                            if (bad++ < 10) printf("M%d N%d K%d op%d acc%d C[%d][%d] %.9g want %.9g\n", M, N, K, op, acc, i, j, got, ex + c0);
                        }
                    }
                    for (int j = N; j < ldc; j++) if (C[(size_t)i*ldc+j] != C0[(size_t)i*ldc+j]) { bad++; printf("pad written\n"); }
                }
                free(A), free(B), free(C), free(C0);
            }
    printf("avx512bf16 kernel (SIMDe emulation): %d elements checked, %d bad\n", checked, bad);
    return bad != 0;
}
