/* folder.c: the CLI side of image folders. See folder.h. */
#include "folder.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool all_digits(const char *s) {
    if (!*s) return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return false;
    return true;
}

int ddpm_cli_label(const char *cmd, const char *arg, const ddpm_checkpoint *ck, int *label) {
    *label = -1;
    if (!arg) return 0;
    if (all_digits(arg)) {
        errno = 0;
        long v = strtol(arg, NULL, 10);
        if (errno || v > 100000) {
            fprintf(stderr, "ddpm %s: --label %s out of range [0, 100000]\n", cmd, arg);
            return 2;
        }
        *label = (int)v;
        return 0;
    }
    const char *json = ddpm_checkpoint_meta(ck, DDPM_META_CLASSES);
    if (!json) {
        fprintf(stderr, "ddpm %s: --label '%s': the checkpoint '%s' has no class names (it was not "
                        "trained on an image folder); give the class index\n", cmd, arg, ck->path);
        return 2;
    }
    char **names;
    int n;
    if (ddpm_folder_classes_parse(json, &names, &n)) {
        fprintf(stderr, "ddpm %s: '%s': %s\n", cmd, ck->path, ddpm_last_error());
        return 1;
    }
    for (int i = 0; i < n && *label < 0; i++)
        if (!strcmp(names[i], arg)) *label = i;
    if (*label < 0) {
        fprintf(stderr, "ddpm %s: --label '%s': no such class in '%s' (classes:", cmd, arg, ck->path);
        for (int i = 0; i < n && i < 20; i++) fprintf(stderr, " %s", names[i]);
        fprintf(stderr, "%s)\n", n > 20 ? " ..." : "");
    }
    ddpm_folder_classes_free(names, n);
    return *label < 0 ? 2 : 0;
}

void ddpm_cli_print_classes(const ddpm_checkpoint *ck) {
    const char *json = ddpm_checkpoint_meta(ck, DDPM_META_CLASSES);
    char **names;
    int n;
    if (!json || ddpm_folder_classes_parse(json, &names, &n)) return;
    printf("classes (folder name -> label):\n");
    for (int i = 0; i < n; i++) printf("  %5d  %s\n", i, names[i]);
    printf("\n");
    ddpm_folder_classes_free(names, n);
}
