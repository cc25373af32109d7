/* loss.c: the L_simple regression losses (mean over all elements), matching
 * torch.nn.functional mse_loss / l1_loss / smooth_l1_loss(beta=1) with
 * reduction='mean'. The difference p - y is formed in float as PyTorch does;
 * the sum is accumulated in double. See loss.h. */
#include "ddpm/loss.h"

#include <math.h>

#include "core/util.h"

/* The elementwise loss of d = p - y; *g gets its derivative in p. */
static inline double elem_loss(float d, ddpm_loss_kind kind, double *g) {
    double dd = (double)d, ad = fabs(dd);
    switch (kind) {
    case DDPM_LOSS_L1:
        *g = d > 0.0f ? 1.0 : (d < 0.0f ? -1.0 : 0.0);
        return ad;
    case DDPM_LOSS_HUBER:
        if (ad < 1.0) {
            *g = dd;
            return 0.5 * dd * dd;
        }
        *g = d > 0.0f ? 1.0 : -1.0;
        return ad - 0.5;
    case DDPM_LOSS_L2:
    default:
        *g = 2.0 * dd;
        return dd * dd;
    }
}

/* pred, target, dpred: (n). Returns mean loss; dpred (if not NULL) is overwritten
 * with d(loss)/d(pred). n == 0 gives 0 (PyTorch would give NaN). */
double ddpm_loss(float *dpred, const float *pred, const float *target, size_t n,
                 ddpm_loss_kind kind) {
    if (n == 0) return 0.0;
    double inv_n = 1.0 / (double)n;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        double g; /* d(elementwise loss)/d(pred) */
        sum += elem_loss(pred[i] - target[i], kind, &g);
        if (dpred) dpred[i] = (float)(g * inv_n);
    }
    return sum * inv_n;
}

double ddpm_loss_weighted(float *dpred, const float *pred, const float *target, const double *w, int N,
                          size_t D, ddpm_loss_kind kind) {
    /* dpred, pred, target: (N, D); w: (N) */
    if (N <= 0 || D == 0) return 0.0;
    double inv_n = 1.0 / ((double)N * (double)D);
    double sum = 0.0;
    for (int r = 0; r < N; r++) {
        double row = 0.0;
        for (size_t j = (size_t)r * D; j < (size_t)(r + 1) * D; j++) {
            double g;
            row += elem_loss(pred[j] - target[j], kind, &g);
            if (dpred) dpred[j] = (float)(w[r] * g * inv_n);
        }
        sum += w[r] * row;
    }
    return sum * inv_n;
}

/* Indexed by ddpm_loss_kind. */
static const char *const g_names[] = {"l2", "l1", "huber"};

int ddpm_loss_parse(const char *name) { return ddpm_enum_lookup("loss", g_names, 0, (int)DDPM_COUNT(g_names), name); }

const char *ddpm_loss_name(ddpm_loss_kind kind) {
    return ddpm_enum_name(g_names, (int)DDPM_COUNT(g_names), (int)kind);
}

/* ---- softmax cross-entropy ------------------------------------------------------ */

/* Softmax of one row x (K) into p (K); returns log-sum-exp(x) in double. */
static double softmax_row(float *p, const float *x, int K) {
    float mx = x[0];
    for (int k = 1; k < K; k++) mx = x[k] > mx ? x[k] : mx;
    double sum = 0.0;
    for (int k = 0; k < K; k++) sum += exp((double)x[k] - mx);
    double lse = (double)mx + log(sum);
    if (p)
        for (int k = 0; k < K; k++) p[k] = (float)exp((double)x[k] - lse);
    return lse;
}

void ddpm_softmax_forward(float *probs, const float *logits, int N, int K) {
    // probs, logits (N, K)
    for (int n = 0; n < N; n++) softmax_row(probs + (size_t)n * K, logits + (size_t)n * K, K);
}

double ddpm_softmax_ce_forward(float *probs, const float *logits, const int *labels, int N, int K) {
    // probs (N, K) or NULL, logits (N, K), labels (N)
    if (N <= 0) return 0.0;
    double sum = 0.0;
    for (int n = 0; n < N; n++) {
        const float *x = logits + (size_t)n * K;
        double lse = softmax_row(probs ? probs + (size_t)n * K : NULL, x, K);
        sum += lse - (double)x[labels[n]];
    }
    return sum / N;
}

void ddpm_softmax_ce_backward(float *dlogits, const float *probs, const int *labels, int N, int K,
                              float dloss) {
    // dlogits, probs (N, K), labels (N)
    if (N <= 0) return;
    double s = (double)dloss / N;
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * K;
        float *g = dlogits + (size_t)n * K;
        for (int k = 0; k < K; k++) g[k] += (float)(s * ((double)p[k] - (k == labels[n])));
    }
}
