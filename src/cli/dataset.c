/* dataset.c: where `--data NAME [--data-dir DIR]` finds its files: the
 * dataset-location defaults of the command line (the library takes paths). */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "ddpm/data.h"

/* Debian's dataset-fashion-mnist package installs here. */
#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

static ddpm_status copy_dir(char *out, size_t cap, const char *dir) {
    if (strlen(dir) >= cap) return ddpm_error(DDPM_ERR_ARG, "data directory path too long: '%s'", dir);
    memcpy(out, dir, strlen(dir) + 1);
    return DDPM_OK;
}

ddpm_status ddpm_cli_data_dir(char *out_dir, size_t cap, const char *data, const char *data_dir) {
    char why[1200]; /* the library's message, quoted in ours */
    if (!data || !*data) data = "mnist";
    if (strcmp(data, "mnist") == 0) {
        const char *env = getenv("DDPM_DATA_DIR");
        const char *cand[3] = {data_dir, env && *env ? env : NULL, "data/mnist"};
        ddpm_status s = ddpm_dataset_find(out_dir, cap, cand, 3);
        if (s != DDPM_ERR_IO) return s;
        snprintf(why, sizeof why, "%s", ddpm_last_error());
        return ddpm_error(DDPM_ERR_IO, "MNIST not found (%s): run scripts/fetch_mnist.sh or pass --data-dir DIR", why);
    }
    if (strcmp(data, "fashion") == 0 || strcmp(data, "fashion-mnist") == 0) {
        const char *dir = data_dir ? data_dir : FASHION_MNIST_DIR;
        ddpm_status s = ddpm_dataset_find(out_dir, cap, &dir, 1);
        if (s != DDPM_ERR_IO) return s;
        snprintf(why, sizeof why, "%s", ddpm_last_error());
        if (data_dir) return ddpm_error(DDPM_ERR_IO, "Fashion-MNIST not found (%s)", why);
        return ddpm_error(DDPM_ERR_IO,
                          "Fashion-MNIST not found in '%s': apt-get install dataset-fashion-mnist "
                          "(or pass --data-dir DIR)", dir);
    }
    struct stat st;
    if (stat(data, &st) != 0 || !S_ISDIR(st.st_mode))
        return ddpm_error(DDPM_ERR_ARG, "--data '%s': not a dataset name (mnist, fashion) nor a directory", data);
    return copy_dir(out_dir, cap, data);
}
