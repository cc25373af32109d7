/* clf_internal.h: the classifier's struct, shared by classifier.c and
 * clf_train.c (internal to the eval area). */
#ifndef DDPM_EVAL_CLF_INTERNAL_H
#define DDPM_EVAL_CLF_INTERNAL_H

#include "ddpm/classifier.h"
#include "ddpm/eval.h"

#define CLF_C1 16
#define CLF_C2 32
#define CLF_NPARAMS 8

typedef struct {
    const char *name;
    int ndim, shape[4], fan_in; /* fan_in 0: a bias */
    size_t offset, numel;
} clf_param;

struct ddpm_classifier {
    ddpm_clf_config cfg;
    int max_batch, N;           /* N: images in the last forward */
    clf_param table[CLF_NPARAMS];
    size_t nparams;
    float *mem;                 /* everything below */
    float *params, *grads;      /* (nparams) each; grads NULL for inference */
    const float *x;             /* the last forward's input (N, C, R, R) */
    float *a1, *p1, *a2, *p2, *h, *logits, *work, *gA, *gB;
    uint8_t *argmax, *am1, *am2;
};

void clf_layout(const ddpm_clf_config *c, clf_param t[CLF_NPARAMS], size_t *total);

/* The network shipped in the library (clf_nets.c) for the cache name path
 * ("<dir>/<name>-<hash>.safetensors": the hash of the recipe and the training
 * data, whatever the directory is called): true and its file's bytes, or false. */
bool ddpm_clf_shipped(const char *path, const unsigned char **bytes, size_t *n);

/* ddpm_clf_obtain for given train and test sets (an image folder's split)
 * and recipe o: the cache name, the shipped file, or training under the lock. */
ddpm_status clf_obtain_sets(char *path, size_t cap, bool *trained, double *acc, const char *cache_dir,
                            const char *data_dir, const ddpm_dataset *train, const ddpm_dataset *test,
                            const ddpm_clf_train_opts *o, ddpm_clf_progress_fn progress, void *ud);

/* session.c, shared with the image-folder session (folder_ref.c): load the
 * network at s->net_path, hash it, check it takes the reference s->test;
 * IDX labels for n images, each below num_classes (when > 0). */
ddpm_status eval_session_load_net(ddpm_eval_session *s, const char *dir);
ddpm_status eval_load_labels(int **labels, const char *labels_path, int n, int num_classes);

#endif
