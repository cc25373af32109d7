/* clf_cache.c: the evaluation network of a dataset: shipped in the library
 * for MNIST and Fashion-MNIST, else trained on first use and cached (see
 * ddpm_clf_obtain in classifier.h). */
#define _DEFAULT_SOURCE /* flock */
#include "eval/clf_internal.h"
#include "core/util.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define OBTAIN_BATCH 256

static ddpm_status write_shipped(const char *path, const unsigned char *bytes, size_t n) {
    ddpm_atomic_file af;
    ddpm_status s = ddpm_atomic_open(&af, path);
    if (s) return s;
    if (fwrite(bytes, 1, n, af.f) != n) return ddpm_atomic_fail(&af, strerror(errno));
    return ddpm_atomic_commit(&af);
}

static ddpm_status train_and_save(const char *path, double *acc, const char *data_dir, const ddpm_dataset *train,
                                  const ddpm_dataset *test, const ddpm_clf_train_opts *o,
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
    /* no timings and no paths: the same build, data and thread count give the same file, byte for byte */
    const ddpm_st_meta meta[1] = {{"test_accuracy", accs}};
    if (!s) s = ddpm_clf_save(m, path, meta, 1);
    ddpm_clf_free(m);
    return s;
}

/* An exclusive lock on path.lock, waited for: two evaluations that need the
 * same network train it once; the second finds the first one's file. */
static ddpm_status lock_net(int *fd, const char *path) {
    char lp[4096];
    if (snprintf(lp, sizeof lp, "%s.lock", path) >= (int)sizeof lp) return ddpm_error(DDPM_ERR_ARG, "cache path too long");
    *fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (*fd < 0) return ddpm_error(DDPM_ERR_IO, "cannot create '%s': %s", lp, strerror(errno));
    while (flock(*fd, LOCK_EX))
        if (errno != EINTR) {
            int e = errno;
            close(*fd);
            return ddpm_error(DDPM_ERR_IO, "cannot lock '%s': %s", lp, strerror(e));
        }
    return DDPM_OK;
}

/* Whether path holds exactly bytes[0..n). */
static bool same_bytes(const char *path, const unsigned char *bytes, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    unsigned char buf[1 << 14];
    size_t at = 0, got;
    bool same = true;
    while (same && (got = fread(buf, 1, sizeof buf, f)) > 0) {
        same = at + got <= n && memcmp(buf, bytes + at, got) == 0;
        at += got;
    }
    same = same && !ferror(f) && at == n;
    fclose(f);
    return same;
}

/* Whether path must be (re)made: missing, or, for a shipped network, other
 * bytes than the shipped ones (a cache an earlier version wrote under the
 * same key, e.g. with other metadata, would print another net_sha256). */
static bool stale(const char *path, bool shipped, const unsigned char *bytes, size_t n) {
    struct stat st;
    return shipped ? !same_bytes(path, bytes, n) : stat(path, &st) != 0;
}

ddpm_status clf_obtain_sets(char *path, size_t cap, bool *trained, double *acc, const char *cache_dir,
                            const char *data_dir, const ddpm_dataset *train, const ddpm_dataset *test,
                            const ddpm_clf_train_opts *o, ddpm_clf_progress_fn progress, void *ud) {
    *trained = false;
    *acc = -1.0;
    ddpm_status s = ddpm_clf_cache_path(path, cap, cache_dir, data_dir, train, o);
    const unsigned char *bytes = NULL;
    size_t n = 0;
    bool shipped = !s && ddpm_clf_shipped(path, &bytes, &n);
    if (!s && stale(path, shipped, bytes, n)) {
        int fd = -1;
        if (ddpm_mkdirs(cache_dir) != 0) s = ddpm_error(DDPM_ERR_IO, "cannot create '%s': %s", cache_dir, strerror(errno));
        if (!s) s = lock_net(&fd, path);
        if (!s && stale(path, shipped, bytes, n)) { /* nobody made it while we waited */
            if (shipped) {
                s = write_shipped(path, bytes, n);
            } else {
                *trained = true;
                s = train_and_save(path, acc, data_dir, train, test, o, progress, ud);
            }
        }
        if (fd >= 0) close(fd); /* releases the lock */
    }
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
    if (!s) s = clf_obtain_sets(path, cap, trained, acc, cache_dir, data_dir, &train, test, &o, progress, ud);
    ddpm_dataset_free(&train);
    return s;
}
