/* folder.h: the CLI side of image-folder datasets (src/cli/folder.c): the
 * --data DIR options of `ddpm train`, the class names in checkpoints, and
 * --label NAME of `ddpm sample`. */
#ifndef DDPM_CLI_FOLDER_H
#define DDPM_CLI_FOLDER_H

#include <stdbool.h>

#include "ddpm/checkpoint.h"
#include "ddpm/imagefolder.h"

/* Checkpoint metadata key: the class names, a JSON array in index order
 * (ddpm_folder_classes_json). */
#define DDPM_META_CLASSES "classes"

/* --label K|NAME -> *label: -1 when arg is NULL; digits are an index; any
 * other text is looked up in the checkpoint's class names. Returns 0, or 2
 * after printing a usage error (unknown name, no names in the checkpoint). */
int ddpm_cli_label(const char *cmd, const char *arg, const ddpm_checkpoint *ck, int *label);

/* When the checkpoint holds class names: "classes (folder name -> label):"
 * and one "  index  name" line each. */
void ddpm_cli_print_classes(const ddpm_checkpoint *ck);

#endif
