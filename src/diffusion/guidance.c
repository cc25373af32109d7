/* guidance.c: classifier-free guidance as a model wrapper (sampler.h). */
#include <math.h>
#include <string.h>

#include "ddpm/sampler.h"

ddpm_status ddpm_guidance_init(ddpm_guidance *g, ddpm_model_fn model, void *ctx, float w,
                               int num_classes, size_t D, int max_batch) {
    if (!g) return ddpm_error(DDPM_ERR_ARG, "guidance: NULL");
    memset(g, 0, sizeof *g);
    if (!model || D < 1 || max_batch < 1)
        return ddpm_error(DDPM_ERR_ARG, "guidance: missing model or empty batch");
    if (num_classes < 1)
        return ddpm_error(DDPM_ERR_ARG, "guidance needs a class-conditional model");
    if (!isfinite(w) || w < 0.0f)
        return ddpm_error(DDPM_ERR_ARG, "the guidance weight must be a finite number >= 0, got %g",
                          (double)w);
    *g = (ddpm_guidance){.model = model, .ctx = ctx, .w = w, .num_classes = num_classes, .D = D,
                         .max_batch = max_batch};
    size_t n2 = 2 * (size_t)max_batch;
    g->x2 = ddpm_malloc(n2 * D * sizeof(float));   /* [2B, D] */
    g->eps2 = ddpm_malloc(n2 * D * sizeof(float)); /* [2B, D] */
    g->t2 = ddpm_malloc(n2 * sizeof(int));         /* [2B] */
    g->lab2 = ddpm_malloc(n2 * sizeof(int));       /* [2B] */
    if (!g->x2 || !g->eps2 || !g->t2 || !g->lab2) {
        ddpm_guidance_free(g);
        return ddpm_error(DDPM_ERR_NOMEM, "out of memory for a guided batch of %d", max_batch);
    }
    return DDPM_OK;
}

void ddpm_guidance_free(ddpm_guidance *g) {
    if (!g) return;
    ddpm_free(g->x2);
    ddpm_free(g->eps2);
    ddpm_free(g->t2);
    ddpm_free(g->lab2);
    memset(g, 0, sizeof *g);
}

ddpm_status ddpm_guidance_eps(void *p, float *eps_hat, const float *x, const int *t,
                              const int *labels, int N) {
    ddpm_guidance *g = p;
    if (N < 1 || N > g->max_batch)
        return ddpm_error(DDPM_ERR_ARG, "guidance: batch of %d, at most %d", N, g->max_batch);
    size_t ND = (size_t)N * g->D;
    /* rows 0..N-1 conditional, N..2N-1 the same images with "no label" */
    memcpy(g->x2, x, ND * sizeof(float));
    memcpy(g->x2 + ND, x, ND * sizeof(float));
    for (int n = 0; n < N; n++) {
        g->t2[n] = g->t2[N + n] = t[n];
        g->lab2[n] = labels ? labels[n] : g->num_classes;
        g->lab2[N + n] = g->num_classes;
    }
    ddpm_status st = g->model(g->ctx, g->eps2, g->x2, g->t2, g->lab2, 2 * N);
    if (st) return st;
    double w = g->w, wu = 1.0 - w;
    const float *ec = g->eps2, *eu = g->eps2 + ND;
    for (size_t j = 0; j < ND; j++) eps_hat[j] = (float)(wu * (double)eu[j] + w * (double)ec[j]);
    return DDPM_OK;
}
