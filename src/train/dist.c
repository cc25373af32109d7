/* dist.c: data-parallel training over MPI, the one file that calls MPI. Built
 * with MPI when CMake finds it (DDPM_HAVE_MPI); otherwise, and in a process
 * not started by mpirun, the world has one rank and every call is a no-op,
 * so a plain `ddpm train` behaves exactly as without MPI. See dist.h. */
#define _POSIX_C_SOURCE 200809L
#include "train/dist.h"

#include <stdlib.h>
#include <time.h>

#include "ddpm/progress.h"
#include "ddpm/train.h"


#ifdef DDPM_HAVE_MPI
#include <mpi.h>

static int g_rank, g_size = 1;
static bool g_mpi; /* this process joined an MPI job */

/* Started by mpirun (Open MPI, or a PMI launcher such as srun / MPICH's)? */
static bool launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMI_SIZE") || getenv("PMIX_RANK");
}

ddpm_status ddpm_dist_init(int *argc, char ***argv) {
    if (g_mpi || !launched_by_mpirun()) return DDPM_OK;
    int provided;
    if (MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
        return ddpm_error(DDPM_ERR_IO, "cannot join the MPI job (MPI_Init failed)");
    /* errors abort the job (the default handler), so no rank waits forever */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_mpi = true;
    return DDPM_OK;
}

void ddpm_dist_finalize(void) {
    if (g_mpi) MPI_Finalize();
    g_mpi = false;
}

void ddpm_dist_abort(int code) {
    if (g_mpi) MPI_Abort(MPI_COMM_WORLD, code);
}

bool ddpm_dist_available(void) { return true; }
int ddpm_dist_rank(void) { return g_rank; }
int ddpm_dist_size(void) { return g_size; }

ddpm_status ddpm_dist_sum_f32(float *x, size_t n) {
    if (g_size == 1) return DDPM_OK;
    /* in chunks below INT_MAX elements (MPI counts are int) */
    for (size_t off = 0; off < n;) {
        int c = n - off > (1u << 30) ? 1 << 30 : (int)(n - off);
        MPI_Allreduce(MPI_IN_PLACE, x + off, c, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        off += (size_t)c;
    }
    return DDPM_OK;
}

ddpm_status ddpm_dist_sum_f64(double *x, int n) {
    if (g_size > 1) MPI_Allreduce(MPI_IN_PLACE, x, n, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
    return DDPM_OK;
}

bool ddpm_dist_any(bool b) {
    int v = b;
    if (g_size > 1) MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
    return v != 0;
}

bool ddpm_dist_same_u64(uint64_t h) {
    if (g_size == 1) return true;
    uint64_t lo = h, hi = h;
    MPI_Allreduce(MPI_IN_PLACE, &lo, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &hi, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    return lo == hi;
}

#else /* no MPI: a world of one */

ddpm_status ddpm_dist_init(int *argc, char ***argv) {
    (void)argc, (void)argv;
    return DDPM_OK;
}
void ddpm_dist_finalize(void) {}
void ddpm_dist_abort(int code) { (void)code; }
bool ddpm_dist_available(void) { return false; }
int ddpm_dist_rank(void) { return 0; }
int ddpm_dist_size(void) { return 1; }
ddpm_status ddpm_dist_sum_f32(float *x, size_t n) { (void)x, (void)n; return DDPM_OK; }
ddpm_status ddpm_dist_sum_f64(double *x, int n) { (void)x, (void)n; return DDPM_OK; }
bool ddpm_dist_any(bool b) { return b; }
bool ddpm_dist_same_u64(uint64_t h) { (void)h; return true; }

#endif
