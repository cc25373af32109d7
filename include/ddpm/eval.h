/* eval.h: sample-quality metrics in a feature space and the variational
 * bound in bits/dim (docs/design.md §7).
 *
 * Features are rows of d floats (the classifier's penultimate layer, see
 * classifier.h); every statistic is accumulated in double.
 */
#ifndef DDPM_EVAL_H
#define DDPM_EVAL_H

#include <stddef.h>

#include "ddpm/classifier.h"
#include "ddpm/imagefolder.h"
#include "ddpm/common.h"
#include "ddpm/pipeline.h"
#include "ddpm/diffusion.h"
#include "ddpm/sampler.h"
#include "ddpm/rng.h"
#include "ddpm/schedule.h"

/* ---- Fréchet distance ------------------------------------------------------ */

typedef struct {
    int d;       /* feature dimension */
    long n;      /* rows the statistics came from */
    double *mu;  /* (d) mean */
    double *cov; /* (d, d) covariance with the unbiased 1/(n - 1) (numpy's np.cov) */
} ddpm_gauss_stats;

/* Mean and covariance of feats (n, d), n >= 2. Free with ddpm_gauss_stats_free. */
ddpm_status ddpm_gauss_stats_compute(ddpm_gauss_stats *s, const float *feats, int n, int d);
void ddpm_gauss_stats_free(ddpm_gauss_stats *s);

/* |mu1 - mu2|^2 + Tr S1 + Tr S2 - 2 sum_i sqrt(lambda_i), lambda_i the
 * eigenvalues of the symmetric sqrt(S1) S2 sqrt(S1) (negative round-off
 * clamped to 0). sqrt(S1) and the eigenvalues come from LAPACK's dsyev
 * (OpenBLAS). S1, S2 (d, d) symmetric positive semi-definite. */
ddpm_status ddpm_frechet_distance(double *out, const double *mu1, const double *cov1, const double *mu2,
                                  const double *cov2, int d);

/* ---- precision and recall (Kynkäänniemi et al. 2019) ------------------------- */

/* The k-NN manifold of a set is the union of balls around its points with
 * radius = distance to the k-th nearest other point of the set. precision =
 * fraction of fake rows inside the real manifold, recall = fraction of real
 * rows inside the fake manifold ("inside": distance <= radius). Distances in
 * double. real (nr, d), fake (nf, d); k < nr and k < nf. Cost: O((nr + nf)^2 d). */
ddpm_status ddpm_precision_recall(double *precision, double *recall, const float *real, int nr,
                                  const float *fake, int nf, int d, int k);

/* ---- kernel inception distance (Binkowski et al. 2018) ------------------------- */

/* KID: the unbiased estimate of MMD^2 with the polynomial kernel
 * k(x, y) = (x.y / d + 1)^3, averaged over subsets, as clean-fid's
 * kernel_distance and torch-fidelity's kid: for each subset s, rows
 * ia[s m .. s m + m) of a and ib[s m ..) of b (distinct within a subset),
 *   MMD^2_s = (sum_{i!=j} k(a_i, a_j) + sum_{i!=j} k(b_i, b_j)) / (m (m - 1))
 *             - 2 sum_{i,j} k(a_i, b_j) / m^2;
 * *mean and *std (ddof 0, numpy's np.std) over the S subsets. Dot products
 * by ddpm_gemm in float, kernels and sums in double. Cost: 3 S m^2 d. */
ddpm_status ddpm_kid_subsets(double *mean, double *std, const float *a, const float *b, int d, const int *ia,
                             const int *ib, int S, int m);

#define DDPM_KID_SUBSETS 100
#define DDPM_KID_SUBSET_MAX 1000
/* KID of fake (nf, d) against real (nr, d): DDPM_KID_SUBSETS subsets of
 * m = min(DDPM_KID_SUBSET_MAX, nf, nr) rows, drawn without replacement
 * from a generator seeded with `seed` (for each subset the fake rows, then
 * the real rows; each a partial Fisher-Yates shuffle with ddpm_rng_below),
 * so the same inputs and seed give the same numbers. */
ddpm_status ddpm_kid(double *mean, double *std, const float *real, int nr, const float *fake, int nf, int d,
                     uint64_t seed);
/* That m: min(DDPM_KID_SUBSET_MAX, nf, nr). */
int ddpm_kid_subset_size(int nr, int nf);

/* ---- classifier-output metrics -------------------------------------------- */

typedef struct {
    double confidence;     /* mean over images of the top-class probability */
    double class_entropy;  /* bits, entropy of the histogram of predicted classes */
    double label_accuracy; /* fraction whose predicted class equals labels[i]; -1 without labels */
} ddpm_class_metrics;

/* probs (n, K); labels (n) or NULL. */
ddpm_status ddpm_class_metrics_compute(ddpm_class_metrics *out, const float *probs, const int *labels, int n,
                                       int K);

/* ---- bits/dim (Ho et al. eq. 5, improved-diffusion's calc_bpd_loop) ---------- */

/* The term at timestep t of the variational bound for N images, in bits/dim
 * (mean over the D elements, divided by ln 2), given x0, x_t and the
 * model's eps_hat at (x_t, t):
 *   t > 0:  KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) between Gaussians: the
 *           posterior's log variance posterior_log_var_clipped_t, the model's
 *           mean from the clipped x0_hat (docs/design.md §5) and its log variance
 *           posterior_log_var_clipped_t (small) or log beta_t (large);
 *           at t = 0 both kinds use posterior_var_1 for the decoder's scale
 *           (improved-diffusion's FIXED_SMALL / FIXED_LARGE);
 *   t = 0:  -log p(x0 | x_1) under the discretized Gaussian decoder (bins of
 *           width 2/255, the outer bins open; improved-diffusion's tanh
 *           approximation of the normal CDF, probabilities clamped at 1e-12).
 * s: a base (not respaced) schedule. bits (N); x0, xt, eps_hat (N, D). */
void ddpm_vb_term_bpd(double *bits, const float *x0, const float *xt, const float *eps_hat, int t,
                      const ddpm_schedule *s, ddpm_var_kind var, int N, size_t D);

/* L_T = KL(q(x_{T-1} | x0) || N(0, I)) in bits/dim. bits (N); x0 (N, D). */
void ddpm_prior_bpd(double *bits, const float *x0, const ddpm_schedule *s, int N, size_t D);

#define DDPM_BPD_MAX_BATCH 256

/* Floats of scratch ddpm_bpd_loop needs: 2 N D. */
size_t ddpm_bpd_workspace(int N, size_t D);

/* The whole bound of N images x0 (N, D) in [-1, 1]: for t = T-1 down to 0,
 * x_t = q_sample(x0, noise) with the noise of image n drawn by
 * ddpm_rng_fill_normal(&rngs[n], ., D) (images in order), then one eps_fn
 * call (labels NULL) for the batch (N <= DDPM_BPD_MAX_BATCH) and ddpm_vb_term_bpd. terms (N, T + 1): column t the
 * term of timestep t (t = 0 the decoder), column T the prior L_T; the total
 * of image n is the sum of its row. on_t (may be NULL) is called after each
 * timestep with the number done (1..T); nonzero stops (DDPM_ERR_INTERRUPTED). */
ddpm_status ddpm_bpd_loop(double *terms, const float *x0, int N, size_t D, const ddpm_schedule *s,
                          ddpm_var_kind var, ddpm_model_fn eps_fn, void *ctx, ddpm_rng *rngs, float *work,
                          int (*on_t)(void *ud, int done, int T), void *ud);


/* The bound of a model on the first n images of a dataset, in batches of
 * at most `batch` (<= DDPM_BPD_MAX_BATCH): image i's noise from a stream
 * seeded from (seed, i), so the result does not depend on the batch. The
 * mean bits/dim, its standard error over the images, and the mean of each
 * term: terms[t] for t = 0..T-1 (t = 0 the decoder), terms[T] the prior. */
typedef struct {
    int n, T;
    double bpd, bpd_stderr, prior, decoder, kl; /* kl: the sum of terms 1..T-1 */
    double *terms;                              /* [T + 1], malloc'ed: ddpm_bpd_result_free */
} ddpm_bpd_result;

/* on_t as in ddpm_bpd_loop, with done counting timesteps over all batches
 * (1 .. ceil(n / batch) T). */
ddpm_status ddpm_eval_bpd(ddpm_bpd_result *r, ddpm_pipeline *p, const ddpm_dataset *ds, int n, int batch,
                          uint64_t seed, ddpm_var_kind var, int (*on_t)(void *ud, int done, int total), void *ud);
void ddpm_bpd_result_free(ddpm_bpd_result *r);
/* The mean terms as CSV "t,term,bits_per_dim" (term: decoder, kl, prior), atomically. */
ddpm_status ddpm_bpd_write_terms(const char *path, const ddpm_bpd_result *r);

/* ---- the protocol: generated images against a test split ----------------------
 * A reference holds the evaluation network and the test split's features
 * and statistics, computed once; every evaluation after that costs the
 * classifier pass over the n images plus O((n + n_pr)^2) for
 * precision/recall. FID is against the whole test split, precision/recall
 * (k = 3) against its first min(n, test size) images. */
#define DDPM_EVAL_K 3

typedef struct {
    ddpm_classifier *net;       /* borrowed */
    const ddpm_dataset *test;   /* borrowed */
    float *feats;               /* (test->n, DDPM_CLF_FEATURES) */
    ddpm_gauss_stats stats;
    int down;                   /* images come at down x the network's size (0 or 1: the same);
                                 * ddpm_eval_images reduces them first (ddpm_eval_downsample) */
} ddpm_eval_ref;

typedef struct {
    int n, n_pr;                /* images evaluated; reference rows for precision/recall */
    double fid, precision, recall, confidence, class_entropy;
    double label_accuracy;      /* -1 without labels */
    double kid, kid_std;        /* ddpm_kid against the whole reference, seed DDPM_EVAL_KID_SEED */
    int n_kid;                  /* KID's subset size */
} ddpm_eval_metrics;

#define DDPM_EVAL_KID_SEED 0

/* out (n, c, h / f, w / f) = the mean of each f x f block of px (n, c, h, w),
 * rounded half up, in integers (so it is the same on every machine); h and
 * w multiples of f. How an image folder at more than DDPM_EVAL_MAX_NET_RES
 * px meets its evaluation network (f = 2 for 64 px). */
void ddpm_eval_downsample(uint8_t *out, const uint8_t *px, int n, int c, int h, int w, int f);
#define DDPM_EVAL_MAX_NET_RES 32

/* net must take test's images (shape and classes; checked). */
ddpm_status ddpm_eval_ref_init(ddpm_eval_ref *r, ddpm_classifier *net, const ddpm_dataset *test);
void ddpm_eval_ref_free(ddpm_eval_ref *r);

/* The metrics of n >= 4 u8 images (n, C, H, W) in the test split's shape;
 * labels (n) or NULL. */
ddpm_status ddpm_eval_images(ddpm_eval_metrics *m, const ddpm_eval_ref *r, const uint8_t *u8, int n,
                             const int *labels);

/* Generated images from an IDX file in the shape of `like` (c, h, w): the
 * first n of them (n <= 0: all; *n gets the count), at least DDPM_EVAL_K + 1;
 * labels_path (may be NULL) an IDX label file with at least n labels, each
 * in 0..like->num_classes-1. *u8 [n, D] and *labels [n] (or NULL) are
 * malloc'ed. Errors name the file and the problem: DDPM_ERR_ARG for an n
 * beyond the file's count, DDPM_ERR_FORMAT for a file that does not fit. */
ddpm_status ddpm_eval_load_images(uint8_t **u8, int **labels, int *n, const char *path, const char *labels_path,
                                  const ddpm_dataset *like);

/* ---- a session: test split, evaluation network, reference statistics -------- */

#define DDPM_EVAL_CACHE_DIR "data/eval" /* where networks are cached; $DDPM_EVAL_CACHE overrides */

typedef struct {
    ddpm_dataset test;
    ddpm_classifier *net;
    ddpm_eval_ref ref;
    char net_path[1100], net_hash[17]; /* the network file and its SHA-256 prefix */
    char net_acc[32];                  /* its recorded test accuracy, "" if none */
    bool trained;                      /* this call trained it (first use) */
    double trained_acc;
    /* image folders: the reference is the whole folder (test above, at the
     * network's size); the network trained on the rest of the held-out split */
    bool folder;
    int size, channels;                /* the images' size and channels (before ref.down) */
    int n_train, n_held;               /* the network's split (images; x 4 rotations without classes) */
    bool rotation;                     /* a folder without classes: the network predicts rotations */
    char folder_desc[160];             /* "32 px, 3 channels, alpha white, ...": the protocol line */
} ddpm_eval_session;

/* An image folder with class subfolders as a reference: loaded through the
 * data front (datasource.h) at the model's size and channels with its alpha
 * mode, center-cropped, no random augmentation. */
typedef struct {
    int size, channels;        /* 0: the shape of `images` (ddpm_eval_input_shape), else 32, 3 */
    ddpm_alpha_mode alpha;
    const char *images;        /* generated images (a file or directory), or NULL */
} ddpm_eval_folder_opts;

/* The folder options for evaluating a checkpoint p's samples (p non-NULL:
 * its size, channels and recorded alpha mode) or generated images at path
 * `images`; alpha (NULL: p's or white) a valid ddpm_alpha_parse name. */
ddpm_eval_folder_opts ddpm_eval_folder_opts_for(const ddpm_pipeline *p, const char *images, const char *alpha);

/* Image i of a folder is held out when the first 8 bytes of the SHA-256 of
 * its pixels at the network's size and its label, as a little-endian
 * integer, taken mod 10 are 0: about 10 %, independent of file order and
 * names, unchanged for every other image when one is added, and equal
 * images (duplicates) fall on the same side. */
bool ddpm_eval_held_out(const uint8_t *px, size_t D, int label);
#define DDPM_EVAL_HELD_MOD 10
#define DDPM_EVAL_ROTATIONS 4

/* ddpm_eval_session_open for a directory that is either IDX files (then as
 * ddpm_eval_session_open) or an image folder, with the folder loading
 * options fo (NULL: defaults). A folder with class subfolders (every image
 * in one) trains its network on the classes; any other folder on rotation
 * prediction (self-supervised, Gidaris et al. 2018): each image in 4
 * quarter turns, labelled 0..3, so the classifier outputs (confidence,
 * class_entropy) are about rotations there, real images scoring near 1
 * and 0 bits. The folder's network is the shipped one when its cache name matches
 * (clf_nets.c), else trained on first use on the train part of the split
 * and cached like the IDX networks, its top-1 accuracy on the held-out
 * part in its metadata (test_accuracy). */
ddpm_status ddpm_eval_session_open_ex(ddpm_eval_session *s, const char *dir, const ddpm_eval_folder_opts *fo,
                                      const char *net, int threads, ddpm_clf_progress_fn on_train, void *ud);

/* Generated images for a session: an IDX file (as ddpm_eval_load_images)
 * or a directory of PNG images (in bytewise order of their names, each of
 * the session's size, no resizing; alpha as fo). *u8 in the session's image
 * shape (c, size, size) before ref.down. */
ddpm_status ddpm_eval_session_load(uint8_t **u8, int **labels, int *n, const ddpm_eval_session *s, const char *path,
                                   const char *labels_path, const ddpm_eval_folder_opts *fo);

/* The image shape of generated images at path (an IDX file: its header; a
 * directory: its first PNG in bytewise order): *size (square only), *channels. */
ddpm_status ddpm_eval_input_shape(int *size, int *channels, const char *path);

/* The protocol for the IDX dataset in dir: its test split, the network
 * `net` (NULL: the dataset's cached network, trained on first use with one
 * thread so the file does not depend on the machine, progress through
 * on_train; threads is restored after) and the reference statistics. The
 * network must take the split's images. */
ddpm_status ddpm_eval_session_open(ddpm_eval_session *s, const char *dir, const char *net, int threads,
                                   ddpm_clf_progress_fn on_train, void *ud);
void ddpm_eval_session_close(ddpm_eval_session *s);

/* Draws images 0..n-1 through the pipeline with o (a conditional model
 * with o->label = -1 gets labels cycling 0..K-1, and label_accuracy) and
 * evaluates them. The call for `ddpm eval -c` and for metrics during
 * training (over ddpm_pipeline_set_weights of the EMA weights). */
ddpm_status ddpm_eval_pipeline(ddpm_eval_metrics *m, const ddpm_eval_ref *r, ddpm_pipeline *p,
                               const ddpm_draw_opts *o, int n);

#endif
