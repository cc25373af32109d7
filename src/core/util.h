/* util.h: small helpers shared inside the library (not public API): when a
 * loop is worth an OpenMP team, alignment rounding, array counts and the
 * name tables behind the enum parse/name pairs (ddpm_loss_parse, ...).
 *
 * Parallel thresholds. A loop runs on the OpenMP team only above its
 * threshold: below it, waking the team costs more than the loop. Measured
 * with scripts/par_threshold.c (gcc -O2 -march=native -fopenmp, 2 threads,
 * median of 301 runs) on 2026-12-01, twice, on the 2-core machine shared
 * with other jobs (load 17-23), so the numbers are noisy; the values were
 * kept where they were, on the serial side of the break-even:
 *     n        add 1t/2t (us)   silu 1t/2t (us)   memset 1t/2t (us)
 *     4096       2.6/4.3  3.7/4.0   10/6.7   15/11     1.7/3.9
 *     16384      6.5/5.7  7.6/8.2   36/21    61/34     2.3/4.5
 *     32768     10.7/7.9 15.9/14.0  66/38   109/60     2.9/4.4
 *     65536       20/13    20/20    134/68  156/115    4.1/4.4
 *     131072                                            7.4/6.7
 * A copy or add breaks even at 16K-32K elements; a loop with an exp or a
 * division per element (SiLU, GroupNorm) gains from ~4K; a memset only from
 * ~128K. GEMM-shaped work (convs, attention, the 1x1 shortcut) is counted
 * in FLOPs: 4e6 FLOPs take ~100-200 us on one core, against a parallel
 * region that costs microseconds when the other core is idle and a time
 * slice (milliseconds) when it is busy; it also keeps the thousands of tiny
 * forwards of the gradient checks serial (no separate measurement). Thread
 * count never changes a result: every output element is computed by one
 * thread in a fixed order.
 */
#ifndef DDPM_CORE_UTIL_H
#define DDPM_CORE_UTIL_H

#include <stdbool.h>
#include <stdint.h>
#include <stddef.h>

/* Elements of a memory-bound loop (copy, add, axpy, concat, Adam, EMA, the
 * samplers' updates). */
#define DDPM_PAR_MIN_ELEMS 32768
/* Elements of a loop with an exp or division per element (activations,
 * GroupNorm). */
#define DDPM_PAR_MIN_ELEMS_MATH 16384
/* FLOPs of a GEMM-shaped call (conv, attention, 1x1 shortcut). */
#define DDPM_PAR_MIN_FLOPS 4e6
/* Elements of a chunked memset (zeroing a gradient): several times cheaper
 * per element than an add, so a team pays off only later. */
#define DDPM_PAR_MIN_ZERO ((size_t)8 << 14)

/* Number of elements of an array (not a pointer). */
#define DDPM_COUNT(a) (sizeof(a) / sizeof((a)[0]))

/* n rounded up to a multiple of 16 floats (64 bytes, DDPM_ALIGN), so every
 * slice carved from an aligned workspace stays aligned. */
static inline size_t ddpm_round16(size_t n) { return (n + 15) & ~(size_t)15; }

/* The index of `s` in names[0..n), or -1 (also for s == NULL): the parse half
 * of an enum whose values are 0..n-1 in the order of `names`. */
int ddpm_enum_parse(const char *const *names, int n, const char *s);
/* ddpm_enum_parse over names[first..n) that, for a name not there, also
 * leaves "unknown WHAT 'S' (expected a, b or c)" for ddpm_last_error(), so
 * the list in the message is the table itself. */
int ddpm_enum_lookup(const char *what, const char *const *names, int first, int n, const char *s);
/* names[v], or "?" when v is outside [0, n). */
const char *ddpm_enum_name(const char *const *names, int n, int v);

/* Grows the array *arr of elem-byte entries to hold at least `need`
 * entries (capacity doubling from 16). False, with *arr untouched, when
 * memory or int range runs out. */
bool ddpm_grow(void **arr, int *cap, int need, size_t elem);

/* mkdir -p (mode 0777 less the umask): 0, or -1 with errno set (ENOTDIR when a part of
 * path is not a directory, ENAMETOOLONG past 1023 bytes). */
int ddpm_mkdirs(const char *path);

/* Replaces control characters in s with '?', in place: a message quoting a
 * file name or text from a file stays one line. */
void ddpm_one_line(char *s);

/* Length of the valid UTF-8 sequence starting at p (1-4), or 0 if invalid
 * (bad lead or continuation byte, overlong form, surrogate, > U+10FFFF). */
size_t ddpm_utf8_len(const unsigned char *p, const unsigned char *end);

/* A printable, bounded copy of untrusted text (a tensor name or metadata
 * value from a file) for one-line error messages: control bytes and
 * invalid UTF-8 become '?', text past 60 bytes is cut and ends in "...". */
typedef struct {
    char s[80];
} ddpm_shown;
ddpm_shown ddpm_show(const char *text);

/* Test hooks, read from the environment (like git's GIT_TEST_*; see
 * docs/reliability.md). Unset, they cost a getenv per write and do nothing.
 * Both count, from 1 in this process, the writes of files whose base name
 * starts with <prefix>; the hooks sit halfway through a write: in an atomic
 * write the temporary file is complete but not renamed, of a log.csv row
 * half is appended.
 *
 * DDPM_TEST_KILL_AT=<prefix>:<n>: the n-th such write raises SIGKILL
 * (ddpm_test_kill_point).
 * DDPM_TEST_ENOSPC_AT=<prefix>:<n>: the n-th such write finds the disk full:
 * ddpm_test_no_space says so, and the writer fails with ENOSPC. */
void ddpm_test_kill_point(const char *path);
bool ddpm_test_no_space(const char *path);
/* DDPM_TEST_KILL_ITER=<rank>:<n>: the process of that rank (0 when not
 * distributed) raises SIGKILL once its trainer has finished iteration n, so a
 * test can kill a rank that writes nothing at a known point. */
void ddpm_test_kill_iter(int rank, int64_t iter);

#endif
