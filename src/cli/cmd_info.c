/* cmd_info.c: `ddpm info [-c CKPT] [model flags]`: the model's blocks, output
 * shapes, parameter counts and forward FLOPs; with -c, a checkpoint's model
 * and metadata. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "ddpm/checkpoint.h"
#include "ddpm/imagefolder.h"

/* When the checkpoint holds class names: "classes (folder name -> label):"
 * and one "  index  name" line each. */
static void print_classes(const ddpm_checkpoint *ck) {
    const char *json = ddpm_checkpoint_meta(ck, DDPM_META_CLASSES);
    char **names;
    int n;
    if (!json || ddpm_folder_classes_parse(json, &names, &n)) return;
    printf("classes (folder name -> label):\n");
    for (int i = 0; i < n; i++) printf("  %5d  %s\n", i, names[i]);
    printf("\n");
    ddpm_folder_classes_free(names, n);
}

static int print_model(const char *cmd, const ddpm_unet_config *c) {
    ddpm_unet *m;
    if (ddpm_unet_create(&m, c, 1, false)) return ddpm_cli_error(cmd);
    char text[512];
    ddpm_unet_config_describe(text, sizeof text, c);
    printf("model: %s\n\n", text);
    int nb;
    const ddpm_block_info *b = ddpm_unet_blocks(m, &nb);
    printf("%-26s %-16s %12s %14s\n", "block", "output", "params", "MFLOPs/image");
    for (int i = 0; i < nb; i++) {
        char shape[32];
        snprintf(shape, sizeof shape, "%d x %d x %d", b[i].c, b[i].h, b[i].w);
        printf("%-26s %-16s %12zu %14.2f\n", b[i].name, shape, b[i].params, b[i].flops / 1e6);
    }
    ddpm_fmt_count(text, sizeof text, ddpm_unet_num_params(m));
    printf("\nparameters: %s (%.2f MB as float32)\n", text, ddpm_unet_num_params(m) * 4.0 / 1e6);
    printf("forward FLOPs per image: %.1f MFLOPs (convolutions, linears and attention; 1 multiply-add = 2 FLOPs)\n",
           ddpm_unet_flops(m) / 1e6);
    printf("training FLOPs per image: ~%.1f MFLOPs (forward + backward = 3x forward)\n", 3 * ddpm_unet_flops(m) / 1e6);
    ddpm_unet_free(m);
    return 0;
}

static int cmd_info(int argc, char **argv) {
    const char *cmd = "info";
    ddpm_train_config tc; /* what `ddpm train` trains when no flag says otherwise */
    ddpm_train_config_default(&tc);
    ddpm_unet_config c = tc.model;
    const char *ckpt = NULL;
    ddpm_opt own[] = {
        {"--ckpt", "-c", OPT_STRING, &ckpt, 0, 0, "FILE", "describe the model in this checkpoint"},
    };
    ddpm_opt opts[DDPM_COUNT(own) + DDPM_MODEL_OPTS];
    memcpy(opts, own, sizeof own);
    ddpm_model_opts(opts + DDPM_COUNT(own), &c);
    int n = (int)DDPM_COUNT(opts);
    int rc = ddpm_opts_parse(cmd, argc, argv, opts, n,
                             "usage: ddpm info [-c CKPT] [model options]\n\n"
                             "Print the model's blocks, output shapes, parameter counts and FLOPs.",
                             NULL);
    if (rc) return rc == 1 ? 0 : rc;
    if (ckpt) {
        if (ddpm_opts_refuse(cmd, opts + 1, DDPM_MODEL_OPTS, NULL, 0, "cannot be combined with -c (the checkpoint fixes the model)"))
            return 2;
        ddpm_checkpoint ck;
        if (ddpm_checkpoint_open(&ck, ckpt)) return ddpm_cli_error(cmd);
        printf("checkpoint: %s\n", ckpt);
        printf("contents: model%s%s\n", ck.has_ema ? ", EMA weights" : "", ck.has_adam ? ", Adam moments" : "");
        printf("metadata:\n");
        for (int i = 0; i < ck.file.nmeta; i++) printf("  %-18s %s\n", ck.file.meta[i].key, ck.file.meta[i].value);
        ddpm_objective obj;
        bool recorded;
        if (ddpm_train_read_objective(&ck, &obj, &recorded)) {
            ddpm_cli_error(cmd);
            ddpm_checkpoint_close(&ck);
            return 1;
        }
        printf("objective: %s%s\n\n", ddpm_objective_name(obj),
               recorded ? "" : " (not recorded: a checkpoint from before --objective, which trained eps)");
        print_classes(&ck);
        c = ck.cfg;
        ddpm_checkpoint_close(&ck);
        return print_model(cmd, &c);
    }
    if (ddpm_model_flags_check(cmd, &c, opts + 1, DDPM_MODEL_OPTS)) return 2;
    return print_model(cmd, &c);
}

const ddpm_cli_command ddpm_cmd_info = {"info", cmd_info, "print the model: blocks, shapes, parameters, FLOPs"};
