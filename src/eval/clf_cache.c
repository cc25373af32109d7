/* clf_cache.c: the evaluation network of a dataset, trained on first use
 * and cached (see ddpm_clf_obtain in classifier.h). */
#define _POSIX_C_SOURCE 200809L
#include "ddpm/classifier.h"
#include "core/util.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>

#define OBTAIN_BATCH 256

static ddpm_status train_and_save(const char *path, double *acc, const char *cache_dir, const char *data_dir,
                                  const ddpm_dataset *train, const ddpm_dataset *test, const ddpm_clf_train_opts *o,
                                  ddpm_clf_progress_fn progress, void *ud) {
    if (train->h != train->w)
        return ddpm_error(DDPM_ERR_ARG, "'%s': images are %d x %d; the evaluation network needs square images",
                          data_dir, train->h, train->w);
    ddpm_clf_config c = {train->c, train->h,
                         train->num_classes > test->num_classes ? train->num_classes : test->num_classes};
    ddpm_classifier *m = NULL;
    ddpm_status s = ddpm_clf_create(&m, &c, OBTAIN_BATCH, true);
    if (!s) s = ddpm_clf_train(m, train, o, progress, ud);
    if (!s) s = ddpm_clf_accuracy(m, test, acc);
    char accs[32];
    snprintf(accs, sizeof accs, "%.4f", *acc);
    /* no timings: the same build, data and thread count give the same file, byte for byte */
    const ddpm_st_meta meta[2] = {{"dataset", data_dir}, {"test_accuracy", accs}};
    if (!s && ddpm_mkdirs(cache_dir) != 0) s = ddpm_error(DDPM_ERR_IO, "cannot create '%s': %s", cache_dir, strerror(errno));
    if (!s) s = ddpm_clf_save(m, path, meta, 2);
    ddpm_clf_free(m);
    return s;
}

ddpm_status ddpm_clf_obtain(char *path, size_t cap, bool *trained, double *acc, const char *cache_dir,
                            const char *data_dir, const ddpm_dataset *test, ddpm_clf_progress_fn progress,
                            void *ud) {
    *trained = false;
    *acc = -1.0;
    ddpm_dataset train = {0};
    ddpm_clf_train_opts o;
    ddpm_clf_train_default(&o);
    ddpm_status s = ddpm_dataset_load(&train, data_dir, true);
    if (!s) s = ddpm_clf_cache_path(path, cap, cache_dir, data_dir, &train, &o);
    struct stat st;
    if (!s && stat(path, &st) != 0) {
        *trained = true;
        s = train_and_save(path, acc, cache_dir, data_dir, &train, test, &o, progress, ud);
    }
    ddpm_dataset_free(&train);
    return s;
}
