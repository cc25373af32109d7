/* clf_nets.c: the evaluation networks shipped in the library, so that FID
 * on MNIST, Fashion-MNIST and the emoji folder (scripts/fetch_emoji.sh, RGB,
 * alpha white, at 32 px and, reduced 2 x 2, at 64 px: one network, the
 * same pixels) is measured with the same file on every machine
 * (training one is reproducible only for the same kernels and threads). The
 * files in src/eval/nets are what `ddpm eval` trains and caches with one
 * thread (scripts/make_eval_nets.sh); each is named by its cache key, the
 * hash of the recipe and the training data (ddpm_clf_cache_path). */
#include "eval/clf_internal.h"

#include <stdlib.h>
#include <string.h>

#define NET_MNIST "3819b70e1809ebc3"
#define NET_FASHION "076f5d7b3958a909"
/* The key hashes the decoded pixels: stb_image's PNG decoding is integer
 * arithmetic and its box resize runs without FMA contraction or fast-math
 * (CMakeLists.txt), so they are the same bytes on every machine; one that
 * decoded otherwise would get another key and train its own network. */
#define NET_EMOJI "a71fbf15552d4edf"

/* .incbin embeds a file as it is; DDPM_NETS_DIR (CMake) is its folder. */
#define EMBED(sym, file)                                                                                     \
    __asm__(".section .rodata\n.balign 16\n.global " sym "\n.hidden " sym "\n" sym ":\n.incbin \"" DDPM_NETS_DIR \
            "/" file "\"\n.global " sym "_end\n.hidden " sym "_end\n" sym "_end:\n.previous\n")
EMBED("ddpm_net_mnist", "mnist-" NET_MNIST ".safetensors");
EMBED("ddpm_net_fashion", "fashion-" NET_FASHION ".safetensors");
EMBED("ddpm_net_emoji", "emoji-" NET_EMOJI ".safetensors");

extern const unsigned char ddpm_net_mnist[], ddpm_net_mnist_end[];
extern const unsigned char ddpm_net_fashion[], ddpm_net_fashion_end[];
extern const unsigned char ddpm_net_emoji[], ddpm_net_emoji_end[];

bool ddpm_clf_shipped(const char *path, const unsigned char **bytes, size_t *n) {
    static const struct {
        const char *key;
        const unsigned char *begin, *end;
    } nets[] = {
        {NET_MNIST, ddpm_net_mnist, ddpm_net_mnist_end},
        {NET_FASHION, ddpm_net_fashion, ddpm_net_fashion_end},
        {NET_EMOJI, ddpm_net_emoji, ddpm_net_emoji_end},
    };
    static const char tail[] = ".safetensors";
    size_t len = strlen(path), k = strlen(NET_MNIST), t = sizeof tail - 1;
    if (len < k + 1 + t || strcmp(path + len - t, tail) || path[len - t - k - 1] != '-') return false;
    if (getenv("DDPM_EVAL_RETRAIN")) return false; /* scripts/make_eval_nets.sh */
    for (size_t i = 0; i < sizeof nets / sizeof nets[0]; i++)
        if (!strncmp(path + len - t - k, nets[i].key, k) && nets[i].end > nets[i].begin) {
            *bytes = nets[i].begin;
            *n = (size_t)(nets[i].end - nets[i].begin);
            return true;
        }
    return false;
}
