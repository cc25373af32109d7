/* objective.c: the eps / v / x0 objectives, the conversion of a prediction
 * to eps_hat and x0_hat, and the min-SNR-gamma weights. See objective.h. */
#include "ddpm/objective.h"

#include <math.h>
#include <string.h>

#include "core/util.h"

static const char *const OBJ_NAMES[] = {"eps", "v", "x0"};

int ddpm_objective_parse(const char *name) {
    return ddpm_enum_lookup("objective", OBJ_NAMES, 0, DDPM_COUNT(OBJ_NAMES), name);
}
const char *ddpm_objective_name(ddpm_objective obj) {
    return ddpm_enum_name(OBJ_NAMES, DDPM_COUNT(OBJ_NAMES), obj);
}

void ddpm_objective_target(float *target, const float *x0, const float *eps, const int *t,
                           const ddpm_schedule *s, ddpm_objective obj, int N, size_t D) {
    /* target, x0, eps: [N, D]; t: [N] */
    for (int n = 0; n < N; n++) {
        double a = s->sqrt_alpha_bar[t[n]], b = s->sqrt_one_minus_alpha_bar[t[n]];
        size_t off = (size_t)n * D;
        for (size_t d = 0; d < D; d++) {
            double e = eps[off + d], x = x0[off + d];
            target[off + d] = (float)(obj == DDPM_OBJ_V ? a * e - b * x : obj == DDPM_OBJ_X0 ? x : e);
        }
    }
}

void ddpm_objective_convert(float *eps_hat, float *x0_hat, const float *pred, const float *xt,
                            const int *t, const ddpm_schedule *s, ddpm_objective obj, int N,
                            size_t D) {
    /* eps_hat, x0_hat, pred, xt: [N, D]; t: [N] */
    for (int n = 0; n < N; n++) {
        double a = s->sqrt_alpha_bar[t[n]], b = s->sqrt_one_minus_alpha_bar[t[n]];
        size_t off = (size_t)n * D;
        for (size_t d = 0; d < D; d++) {
            double p = pred[off + d], x = xt[off + d], e, x0;
            if (obj == DDPM_OBJ_V) {
                e = a * p + b * x;
                x0 = a * x - b * p;
            } else if (obj == DDPM_OBJ_X0) {
                e = (x - a * p) / b;
                x0 = p;
            } else {
                e = p;
                x0 = (x - b * p) / a;
            }
            if (eps_hat) eps_hat[off + d] = (float)e;
            if (x0_hat) x0_hat[off + d] = (float)x0;
        }
    }
}

void ddpm_min_snr_weights(double *w, const int *t, const ddpm_schedule *s, ddpm_objective obj,
                          double gamma, int N) {
    /* w, t: [N] */
    for (int n = 0; n < N; n++) {
        double ab = s->alpha_bar[t[n]], snr = ab / (1.0 - ab), c = snr < gamma ? snr : gamma;
        if (gamma <= 0.0) w[n] = 1.0;
        else if (obj == DDPM_OBJ_V) w[n] = c / (snr + 1.0);
        else if (obj == DDPM_OBJ_X0) w[n] = c;
        else w[n] = c / snr;
    }
}

/* ---- the model wrapper ---------------------------------------------------------- */

ddpm_status ddpm_objective_model_init(ddpm_objective_model *om, ddpm_model_fn model, void *ctx,
                                      ddpm_objective obj, const ddpm_schedule *s, size_t D) {
    if (!om) return ddpm_error(DDPM_ERR_ARG, "objective: NULL");
    memset(om, 0, sizeof *om);
    if (!model || !s || !s->beta || D < 1)
        return ddpm_error(DDPM_ERR_ARG, "objective: missing model or schedule");
    if (obj != DDPM_OBJ_EPS && obj != DDPM_OBJ_V && obj != DDPM_OBJ_X0)
        return ddpm_error(DDPM_ERR_ARG, "invalid objective %d", (int)obj);
    for (int i = 0; i < s->T; i++)
        if (s->timesteps[i] != i)
            return ddpm_error(DDPM_ERR_ARG, "objective: needs the base schedule, not a respaced one");
    *om = (ddpm_objective_model){model, ctx, obj, s, D};
    return DDPM_OK;
}

ddpm_status ddpm_objective_eps(void *p, float *eps_hat, const float *x, const int *t,
                               const int *labels, int N) {
    ddpm_objective_model *om = p;
    ddpm_status st = om->model(om->ctx, eps_hat, x, t, labels, N);
    if (st || om->obj == DDPM_OBJ_EPS) return st;
    for (int n = 0; n < N; n++)
        if (t[n] < 0 || t[n] >= om->s->T)
            return ddpm_error(DDPM_ERR_ARG, "objective: timestep %d outside [0, %d)", t[n], om->s->T);
    ddpm_objective_convert(eps_hat, NULL, eps_hat, x, t, om->s, om->obj, N, om->D);
    return DDPM_OK;
}
