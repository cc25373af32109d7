/* run_lock.c: the lock on a run directory and the removal of what killed
 * runs left of their atomic writes. See run.h. */
#define _DEFAULT_SOURCE /* flock */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ddpm/run.h"

/* Whether `name` is a temporary file of one of the run's outputs: an atomic
 * write's "<output>.tmp.XXXXXX" (mkstemp) or the "log.csv.tmp" of earlier
 * versions. */
static bool is_stray_tmp(const char *name) {
    if (!strcmp(name, "log.csv.tmp")) return true;
    const char *t = strstr(name, ".tmp.");
    if (!t || strlen(t + 5) != 6) return false;
    size_t n = (size_t)(t - name);
    static const char *const fixed[] = {DDPM_RUN_CKPT, "loss.png", "fid.png", "samples.png", "log.csv", "run.txt", "report.html"};
    for (size_t i = 0; i < sizeof fixed / sizeof *fixed; i++)
        if (strlen(fixed[i]) == n && !strncmp(name, fixed[i], n)) return true;
    /* samples_NNNNNN.png (6 or more digits) */
    if (n < strlen("samples_000000.png") || strncmp(name, "samples_", 8) || strncmp(name + n - 4, ".png", 4)) return false;
    for (size_t i = 8; i < n - 4; i++)
        if (!isdigit((unsigned char)name[i])) return false;
    return true;
}

/* Called with the lock held, so no other run is writing them. */
static void remove_stray_tmp(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)))
        if (is_stray_tmp(e->d_name)) {
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    closedir(d);
}

/* The file is removed on a clean exit; a run that finds it replaced between
 * open and flock (the holder just removed it) tries again. */
ddpm_status ddpm_run_lock_take(ddpm_run_lock *l, const char *dir) {
    l->fd = -1;
    if (snprintf(l->path, sizeof l->path, "%s/.lock", dir) >= (int)sizeof l->path)
        return ddpm_error(DDPM_ERR_ARG, "run directory path too long: '%s'", dir);
    for (int tries = 0; tries < 3; tries++) {
        int fd = open(l->path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
        if (fd < 0) return ddpm_error(DDPM_ERR_IO, "cannot create '%s': %s", l->path, strerror(errno));
        if (flock(fd, LOCK_EX | LOCK_NB)) {
            int e = errno;
            close(fd);
            if (e == EWOULDBLOCK)
                return ddpm_error(DDPM_ERR_IO, "'%s' is in use by another ddpm train (lock '%s' held)", dir, l->path);
            return ddpm_error(DDPM_ERR_IO, "cannot lock '%s': %s", l->path, strerror(e));
        }
        struct stat a, b;
        if (fstat(fd, &a) == 0 && stat(l->path, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev) {
            l->fd = fd;
            remove_stray_tmp(dir);
            return DDPM_OK;
        }
        close(fd);
    }
    return ddpm_error(DDPM_ERR_IO, "cannot lock '%s': it keeps changing", l->path);
}

void ddpm_run_lock_release(ddpm_run_lock *l) {
    if (l->fd < 0) return;
    unlink(l->path);
    close(l->fd);
    l->fd = -1;
}

ddpm_status ddpm_run_lock_guard(ddpm_run_lock *l, const char *dir, bool resume, bool force) {
    struct stat st;
    char ckpt[1100];
    l->fd = -1;
    snprintf(ckpt, sizeof ckpt, "%s/%s", dir, DDPM_RUN_CKPT);
    ddpm_status s = stat(dir, &st) == 0 ? ddpm_run_lock_take(l, dir) : DDPM_OK;
    if (s) return s;
    bool exists = stat(ckpt, &st) == 0;
    if (!resume && !force && exists)
        return ddpm_error(DDPM_ERR_ARG, "'%s' already exists; pass --resume to continue that run, --force to start "
                                        "over, or --out DIR for a new one", ckpt);
    if (resume && !exists) return ddpm_error(DDPM_ERR_ARG, "cannot resume: '%s' does not exist", ckpt);
    return DDPM_OK;
}
