/* classifier.h: the evaluation network of `ddpm eval`, a small CNN trained
 * in C with the library's own layers:
 *
 *   conv1 3x3 pad 1 (C -> 16), ReLU, max-pool 2x2      (16, H/2, W/2)
 *   conv2 3x3 pad 1 (16 -> 32), ReLU, max-pool 2x2     (32, H/4, W/4)
 *   fc1   linear (32 H/4 W/4 -> 128), ReLU             the features (128)
 *   fc2   linear (128 -> K)                            logits, softmax
 *
 * The 128 features after fc1's ReLU (the penultimate layer) are the space
 * FID and precision/recall are measured in; the softmax gives confidence,
 * class entropy and label accuracy. Images are u8 pixels scaled to [-1, 1]
 * (x / 127.5 - 1), as the diffusion model sees them. H and W (= res) must be
 * multiples of 4.
 *
 * Parameters live in one buffer with PyTorch names (conv1.weight, ...) and
 * layouts; a model is created for a maximum batch and allocates nothing
 * after creation.
 */
#ifndef DDPM_CLASSIFIER_H
#define DDPM_CLASSIFIER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "ddpm/common.h"
#include "ddpm/data.h"
#include "ddpm/safetensors.h"

#define DDPM_CLF_FEATURES 128
#define DDPM_CLF_MAX_CLASSES 256
#define DDPM_CLF_MAX_RES 256
#define DDPM_CLF_FORMAT "ddpm-classifier"

typedef struct {
    int in_ch, res, num_classes; /* 1..4, 4..256 (multiple of 4), 2..256 */
} ddpm_clf_config;

typedef struct ddpm_classifier ddpm_classifier;

ddpm_status ddpm_clf_config_validate(const ddpm_clf_config *cfg);
/* training: allocate gradients. */
ddpm_status ddpm_clf_create(ddpm_classifier **out, const ddpm_clf_config *cfg, int max_batch,
                            bool training);
void ddpm_clf_free(ddpm_classifier *m);
/* He-uniform weights (bound sqrt(6 / fan_in)), zero biases, from a seed. */
void ddpm_clf_init_params(ddpm_classifier *m, uint64_t seed);

const ddpm_clf_config *ddpm_clf_cfg(const ddpm_classifier *m);
size_t ddpm_clf_num_params(const ddpm_classifier *m);
float *ddpm_clf_params(ddpm_classifier *m);
float *ddpm_clf_grads(ddpm_classifier *m); /* NULL for inference models */

/* logits (N, K) = model(x); x (N, in_ch, res, res) in [-1, 1]; N <= max_batch.
 * The features of the last forward are ddpm_clf_features (N, 128). */
ddpm_status ddpm_clf_forward(ddpm_classifier *m, float *logits, const float *x, int N);
const float *ddpm_clf_features(const ddpm_classifier *m);
/* Accumulates (+=) the parameter gradients for dlogits (N, K) of the last
 * forward. Training models only. */
ddpm_status ddpm_clf_backward(ddpm_classifier *m, const float *dlogits);
void ddpm_clf_zero_grad(ddpm_classifier *m);

/* ---- training ----------------------------------------------------------------- */

typedef struct {
    int epochs;      /* passes over the training set (default 3) */
    int batch;       /* default 64 (must be <= the model's max_batch) */
    float lr;        /* Adam, cosine decay to 0 after 100 warmup steps (default 2e-3) */
    uint64_t seed;   /* initialisation and batch order (default 0) */
    int limit;       /* > 0: train on the first `limit` images only (tests) */
    int shift;       /* augmentation: random translations by up to this many pixels (default 1) */
} ddpm_clf_train_opts;

void ddpm_clf_train_default(ddpm_clf_train_opts *o);

/* Called after every optimizer step (1-based `step` of `steps`) with the
 * mean loss of the last batch; return nonzero to stop (DDPM_ERR_INTERRUPTED). */
typedef int (*ddpm_clf_progress_fn)(void *ud, int step, int steps, double loss);

/* Trains m (created with training = true) from ddpm_clf_init_params(o->seed)
 * on ds (which must have labels < num_classes and the model's shape).
 * Deterministic: the same seed and thread count give the same weights. */
ddpm_status ddpm_clf_train(ddpm_classifier *m, const ddpm_dataset *ds, const ddpm_clf_train_opts *o,
                           ddpm_clf_progress_fn progress, void *ud);

/* ---- inference on u8 images -------------------------------------------------------- */

/* For n images pixels (n, in_ch, res, res): feats (n, 128) and probs (n, K)
 * (either may be NULL), in batches of the model's max_batch. */
ddpm_status ddpm_clf_embed(ddpm_classifier *m, float *feats, float *probs, const uint8_t *pixels,
                           int n);
/* Top-1 accuracy on a labelled dataset. */
ddpm_status ddpm_clf_accuracy(ddpm_classifier *m, const ddpm_dataset *ds, double *acc);

/* ---- files ----------------------------------------------------------------------------
 * safetensors: tensors conv1.weight ... fc2.bias; metadata format =
 * "ddpm-classifier", format_version, in_ch, res, num_classes, features, plus
 * the caller's entries (dataset, accuracy, ...). Saving is atomic. */
ddpm_status ddpm_clf_save(ddpm_classifier *m, const char *path, const ddpm_st_meta *extra,
                          int nextra);
/* Loads and validates a file (shapes, finite values) into a new inference
 * model for max_batch images. meta_out (may be NULL) receives the metadata
 * value of meta_key (or "" when absent), cap bytes. */
ddpm_status ddpm_clf_load(ddpm_classifier **out, const char *path, int max_batch,
                          const char *meta_key, char *meta_out, size_t cap);

/* The first 16 hex digits of the SHA-256 of a file (hex: 17 bytes). */
ddpm_status ddpm_file_hash16(char hex[17], const char *path);

/* The cache name of the network for a dataset: "<dir>/<name>-<h>.safetensors"
 * where name is the last component of data_dir and h the first 16 hex digits
 * of SHA-256 over the training recipe, the dataset's shape and its training
 * images and labels: a different dataset or recipe gets a different file. */
ddpm_status ddpm_clf_cache_path(char *out, size_t cap, const char *cache_dir, const char *data_dir,
                                const ddpm_dataset *train, const ddpm_clf_train_opts *o);

/* The network of the dataset in data_dir, trained on first use: path (cap
 * bytes) gets ddpm_clf_cache_path(cache_dir, ...) for the default recipe;
 * when that file is missing, the train split is loaded, a network trained
 * (progress as in ddpm_clf_train; path is filled before the first call),
 * its accuracy on `test` measured (*acc, else -1 when the file existed) and
 * saved there atomically with metadata test_accuracy (no timings, no
 * paths, so the file is reproducible), creating cache_dir, all under a lock
 * on path.lock so concurrent callers train it once; for MNIST,
 * Fashion-MNIST and the emoji folder the shipped network (clf_nets.c) is
 * written there instead of training, also over a cached file of other bytes. *trained tells which happened. For a
 * file that does not depend on the machine, call it with one OpenMP/BLAS
 * thread (conv weight gradients are summed per thread). */
ddpm_status ddpm_clf_obtain(char *path, size_t cap, bool *trained, double *acc, const char *cache_dir,
                            const char *data_dir, const ddpm_dataset *test, ddpm_clf_progress_fn progress,
                            void *ud);

#endif
