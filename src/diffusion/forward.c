/* forward.c: the forward process on dataset images, as `ddpm noise` shows it. */
#include "ddpm/diffusion.h"

#include "core/util.h"
#include "ddpm/unet.h" /* ddpm_parse_int_list */

void ddpm_q_trajectories(float *grid, const ddpm_dataset *ds, int n, const int *t, int L, const ddpm_schedule *s,
                         uint64_t seed) {
    size_t D = (size_t)ds->c * ds->h * ds->w;
    ddpm_rng rng;
    ddpm_rng_seed(&rng, seed);
    for (int i = 0; i < n; i++) {
        float *row = grid + (size_t)i * (1 + L) * D; /* [1 + L, D] */
        float *eps = row + D;                         /* the first noised column holds eps until it is made */
        ddpm_dataset_to_float(row, ds, &i, 1);
        ddpm_rng_fill_normal(&rng, eps, D);
        /* last column first: every later q_sample still reads eps from column 1 */
        for (int j = L - 1; j >= 0; j--) ddpm_q_sample(row + (size_t)(1 + j) * D, row, eps, &t[j], s, 1, D);
    }
}

int ddpm_timesteps_parse(const char *list, int T, int *t, int max) {
    if (!list) {
        int n = T < 10 ? T : 10;
        return n <= max && !ddpm_schedule_respace(t, n, T) ? n : -1;
    }
    int n = ddpm_parse_int_list(list, t, max);
    if (n < 0 && ddpm_parse_int_list(list, (int[1024]){0}, 1024) > max) {
        ddpm_error(DDPM_ERR_ARG, "at most %d timesteps", max);
        return -1;
    }
    if (n < 0) {
        ddpm_error(DDPM_ERR_ARG, "expected a comma-separated list of integers, got '%s'", ddpm_show(list).s);
        return -1;
    }
    for (int j = 0; j < n; j++)
        if (t[j] > T - 1) {
            ddpm_error(DDPM_ERR_ARG, "timestep %d out of range [0, %d] (T = %d)", t[j], T - 1, T);
            return -1;
        }
    return n;
}
