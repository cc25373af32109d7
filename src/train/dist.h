/* dist.h: the collective operations of a data-parallel run, for the trainer.
 * In a world of one (no mpirun, or a build without MPI) every call is a
 * no-op that leaves its data as it is. Internal to src/train; the public
 * part (init, rank, size, abort) is in ddpm/train.h. */
#ifndef DDPM_TRAIN_DIST_H
#define DDPM_TRAIN_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"
#include "ddpm/train.h" /* ddpm_dist_init, _rank, _size, _any */

/* x[0..n) = the sum over ranks, on every rank (MPI_Allreduce in place). */
ddpm_status ddpm_dist_sum_f32(float *x, size_t n);
ddpm_status ddpm_dist_sum_f64(double *x, int n);
/* Whether h is the same on every rank. */
bool ddpm_dist_same_u64(uint64_t h);

#endif
