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

/* The per-image weighted mean (min-SNR-gamma, objective.h):
 *   loss = (1 / (N D)) sum_r w[r] sum_j l(pred[r, j] - target[r, j])
 * and dpred = its gradient (overwritten). w = 1 gives ddpm_loss's value up to
 * the order of the double sum. dpred, pred, target: (N, D); w: (N). */
double ddpm_loss_weighted(float *dpred, const float *pred, const float *target, const double *w, int N,
                          size_t D, ddpm_loss_kind kind);

/* "l2" / "l1" / "huber" <-> kind. Returns -1 for an unknown name (the last
 * error lists the known ones). */
int ddpm_loss_parse(const char *name);
const char *ddpm_loss_name(ddpm_loss_kind kind);

/* ---- softmax cross-entropy (classification) -----------------------------------
 * Shape letters: N rows, K classes. logits, probs, dlogits (N, K); labels (N)
 * in [0, K). As torch.nn.functional.cross_entropy with mean reduction:
 *   loss = -(1/N) sum_n log softmax(logits_n)[labels_n]
 * computed stably (max subtracted, sums in double). */

/* probs = softmax over each row of logits (rows sum to 1). probs may alias
 * logits. */
void ddpm_softmax_forward(float *probs, const float *logits, int N, int K);

/* Writes probs (softmax of logits, as above; may be NULL) and returns the
 * mean cross-entropy in nats (log-sum-exp in double, so a confident wrong
 * prediction gives a large finite loss, not inf). N == 0 gives 0. */
double ddpm_softmax_ce_forward(float *probs, const float *logits, const int *labels, int N, int K);

/* Accumulates (+=) the gradient of dloss * loss into dlogits:
 *   dlogits[n, k] += dloss * (probs[n, k] - [k == labels[n]]) / N
 * probs from ddpm_softmax_ce_forward. */
void ddpm_softmax_ce_backward(float *dlogits, const float *probs, const int *labels, int N, int K,
                              float dloss);

#endif
