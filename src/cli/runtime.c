/* runtime.c: settings that ddpm's libraries read when they load, chosen
 * before main's real work. The only platform-specific code of the CLI.
 *
 * Two runtime settings are read when their libraries load, before main, so
 * ddpm sets them and re-executes itself once when the user has not chosen:
 * - OpenBLAS 0.3.21 does not recognise recent AVX-512 Xeons and falls back to
 *   generic kernels; its AVX-512 (SkylakeX) kernels are 2-3x faster there.
 * - libgomp's idle threads spin for a long time before sleeping. On a quiet
 *   machine that costs nothing, but when other processes share the cores a
 *   spinning thread steals the core its partner needs: a training step took
 *   5x longer under load. A spin count of 30000 is as fast as the default on
 *   a quiet machine (73.3 vs 73.5 img/s, ddpm bench) and degrades gracefully.
 * An explicit OPENBLAS_CORETYPE, GOMP_SPINCOUNT or OMP_WAIT_POLICY wins.
 *
 * Portability: the CPU check is x86-only (elsewhere OpenBLAS's own choice
 * stands), and re-executing needs the path of the running binary, which only
 * Linux gives reliably (/proc/self/exe); elsewhere ddpm runs with the
 * settings the environment gave it, which is correct, only perhaps slower. */
#define _POSIX_C_SOURCE 200809L
#include <stdlib.h>
#include <unistd.h>

#include "cli.h"

static bool has_avx512(void) {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
    return false;
#endif
}

void ddpm_cli_tune_runtime(char **argv) {
#ifdef __linux__
    bool changed = false;
    if (!getenv("OPENBLAS_CORETYPE") && has_avx512())
        changed |= setenv("OPENBLAS_CORETYPE", "SkylakeX", 1) == 0;
    if (!getenv("GOMP_SPINCOUNT") && !getenv("OMP_WAIT_POLICY"))
        changed |= setenv("GOMP_SPINCOUNT", "30000", 1) == 0;
    if (changed) execv("/proc/self/exe", argv); /* both are set now: no loop */
    /* exec failed (no /proc?): carry on with the defaults */
#else
    (void)argv;
    (void)has_avx512;
#endif
}
