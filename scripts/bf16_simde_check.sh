#!/bin/sh
# bf16_simde_check.sh: check the AVX512_BF16 bf16 GEMM (src/nn/gemm_bf16.c) on
# any x86 machine: compile a copy of it against SIMDe (apt-get install
# libsimde-dev) instead of <immintrin.h>, with the target attributes removed,
# and run scripts/bf16_simde_check.c on it. Needs a configured build in
# ${BUILD_DIR:-build} (for libddpm.a). Exit 0 when every element is in bound.
set -eu
src=$(cd "$(dirname "$0")/.." && pwd)
build=${BUILD_DIR:-$src/build}
[ -f /usr/include/simde/x86/avx512.h ] || { echo "bf16_simde_check: needs libsimde-dev" >&2; exit 2; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 - "$src/src/nn/gemm_bf16.c" "$tmp/gemm_bf16_emu.c" <<'PY'
import re, sys
s = open(sys.argv[1]).read()
shim = r'''#define SIMDE_ENABLE_NATIVE_ALIASES
#include <simde/x86/avx512.h>
typedef simde__mmask16 __mmask16;
static inline __m512bh tobh(__m512i x) { __m512bh r; memcpy(&r, &x, sizeof r); return r; }
/* not in every SIMDe: exact versions (masked lanes not read or written) */
static inline simde__m512 emu_maskz_loadu_ps(__mmask16 m, const float *p) {
    float t[16];
    for (int i = 0; i < 16; i++) t[i] = (m >> i & 1) ? p[i] : 0.0f;
    return simde_mm512_loadu_ps(t);
}
static inline void emu_mask_storeu_ps(float *p, __mmask16 m, simde__m512 v) {
    float t[16];
    simde_mm512_storeu_ps(t, v);
    for (int i = 0; i < 16; i++) if (m >> i & 1) p[i] = t[i];
}
static inline simde__m256i emu_cvtepi32_epi16(simde__m512i v) {
    int32_t a[16];
    int16_t b[16];
    simde_mm512_storeu_si512(a, v);
    for (int i = 0; i < 16; i++) b[i] = (int16_t)a[i];
    return simde_mm256_loadu_si256(b);
}
#undef _mm512_maskz_loadu_ps
#define _mm512_maskz_loadu_ps emu_maskz_loadu_ps
#undef _mm512_mask_storeu_ps
#define _mm512_mask_storeu_ps emu_mask_storeu_ps
#define _mm512_cvtepi32_epi16 emu_cvtepi32_epi16'''
s = s.replace('#include <immintrin.h>', shim)
s = re.sub(r'#define TBF __attribute__\(\(target\([^)]*\)\)\)', '#define TBF', s)
s = re.sub(r'#define IBF static inline __attribute__\(\(always_inline, target\([^)]*\)\)\)', '#define IBF static inline', s)
s = s.replace('(__m512bh)x', 'tobh(x)').replace('(__m512bh)bv[v]', 'tobh(bv[v])')
s = re.sub(r'ddpm_(tile_gemm_bf16|gemm_bf16|bf16_isa_supported|bf16_isa_name|bf16_isa_selected)\b', r'emu_\1', s)
open(sys.argv[2], 'w').write(s)
PY
${CC:-gcc} -std=c11 -O1 -fopenmp -w -Wno-psabi -I"$src/src" -I"$src/include" "$src/scripts/bf16_simde_check.c" \
    "$tmp/gemm_bf16_emu.c" "$build/libddpm.a" $(pkg-config --libs openblas zlib 2>/dev/null || echo -lopenblas -lz) -lm \
    -o "$tmp/check"
"$tmp/check"
