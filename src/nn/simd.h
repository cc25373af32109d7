/* simd.h: the build switches the hand-written kernels share (gemm_tile.c,
 * gemm_bf16.c) and the CPU probe of `ddpm bench`: DDPM_X86 where gcc or
 * clang target x86 (target attributes, <immintrin.h> and <cpuid.h> are
 * there), and UNROLL, a full unroll of the next loop. */
#ifndef DDPM_NN_SIMD_H
#define DDPM_NN_SIMD_H

#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
#define DDPM_X86 1
#include <cpuid.h>
#include <immintrin.h>
#endif

#if defined(__clang__)
#define UNROLL _Pragma("clang loop unroll(full)")
#elif defined(__GNUC__)
#define UNROLL _Pragma("GCC unroll 16")
#else
#define UNROLL
#endif

#endif
