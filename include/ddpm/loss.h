/* loss.h: the regression losses of L_simple, averaged over all n elements.
 *   l2:    mean (p - y)^2
 *   l1:    mean |p - y|            (gradient sign(p - y), 0 at 0)
 *   huber: mean smooth_l1(p - y), delta = 1: 0.5 d^2 if |d| < 1 else |d| - 0.5
 * as torch.nn.functional.mse_loss / l1_loss / smooth_l1_loss with mean reduction.
 */
#ifndef DDPM_LOSS_H
#define DDPM_LOSS_H

#include <stddef.h>

typedef enum { DDPM_LOSS_L2 = 0, DDPM_LOSS_L1, DDPM_LOSS_HUBER } ddpm_loss_kind;

/* Returns the loss (accumulated in double; 0 when n == 0). If dpred is not
 * NULL, writes (overwrites, does not accumulate) dpred[i] = d(loss)/d(pred[i]).
 * pred, target, dpred: n floats. */
double ddpm_loss(float *dpred, const float *pred, const float *target, size_t n,
                 ddpm_loss_kind kind);

/* "l2" / "l1" / "huber" <-> kind. Returns -1 for an unknown name. */
int ddpm_loss_parse(const char *name);
const char *ddpm_loss_name(ddpm_loss_kind kind);

#endif
