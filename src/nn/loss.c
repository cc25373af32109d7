/* loss.c: the L_simple regression losses (mean over all elements), matching
 * torch.nn.functional mse_loss / l1_loss / smooth_l1_loss(beta=1) with
 * reduction='mean'. The difference p - y is formed in float as PyTorch does;
 * the sum is accumulated in double. See loss.h. */
#include "ddpm/loss.h"

#include <math.h>

#include "core/util.h"

/* pred, target, dpred: (n). Returns mean loss; dpred (if not NULL) is overwritten
 * with d(loss)/d(pred). n == 0 gives 0 (PyTorch would give NaN). */
double ddpm_loss(float *dpred, const float *pred, const float *target, size_t n,
                 ddpm_loss_kind kind) {
    if (n == 0) return 0.0;
    double inv_n = 1.0 / (double)n;
    double sum = 0.0;
    for (size_t i = 0; i < n; i++) {
        float d = pred[i] - target[i];
        double dd = (double)d, ad = fabs(dd);
        double g; /* d(elementwise loss)/d(pred) */
        switch (kind) {
        case DDPM_LOSS_L1:
            sum += ad;
            g = d > 0.0f ? 1.0 : (d < 0.0f ? -1.0 : 0.0);
            break;
        case DDPM_LOSS_HUBER:
            if (ad < 1.0) {
                sum += 0.5 * dd * dd;
                g = dd;
            } else {
                sum += ad - 0.5;
                g = d > 0.0f ? 1.0 : -1.0;
            }
            break;
        case DDPM_LOSS_L2:
        default:
            sum += dd * dd;
            g = 2.0 * dd;
            break;
        }
        if (dpred) dpred[i] = (float)(g * inv_n);
    }
    return sum * inv_n;
}

/* Indexed by ddpm_loss_kind. */
static const char *const g_names[] = {"l2", "l1", "huber"};

int ddpm_loss_parse(const char *name) { return ddpm_enum_parse(g_names, (int)DDPM_COUNT(g_names), name); }

const char *ddpm_loss_name(ddpm_loss_kind kind) {
    return ddpm_enum_name(g_names, (int)DDPM_COUNT(g_names), (int)kind);
}
