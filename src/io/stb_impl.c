/* stb_impl.c: the stb_image and stb_image_resize implementations, compiled
 * into the library in every build (not linked as Debian's libstb.so).
 *
 * stb_image is upstream's 2.30 (third_party/stb/stb_image.h): Debian's 2.27
 * lacks fixes that our image-folder fuzzer reaches at once, among them a
 * write past a Huffman table's arrays and the use of never-initialised
 * Huffman tables (uninitialised heap memory) in the JPEG decoder; see
 * third_party/stb/README.md. stb_image_resize is libstb-dev's header.
 * Compiled in our sanitizer and fuzz builds with ASan, UBSan and coverage
 * like our own code, and without our warning flags (third-party code).
 */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image.h> /* third_party/stb: first on the include path */
#include <stb_image_resize.h>

#include <limits.h>

#include "io/imagefolder_internal.h"

/* stb_image tells formats apart by testing them in a fixed order
 * (stbi__load_main) and takes TGA, which has no magic number, only when
 * every other test fails; this asks the same tests, so the caller's TGA
 * checks apply to exactly the files stb_image would decode as TGA. */
bool ddpm_stb_is_tga(const unsigned char *b, size_t n) {
    if (n > INT_MAX) return false;
    stbi__context s;
    stbi__start_mem(&s, b, (int)n);
    if (stbi__png_test(&s) || stbi__bmp_test(&s) || stbi__gif_test(&s) || stbi__psd_test(&s) ||
        stbi__pic_test(&s) || stbi__jpeg_test(&s) || stbi__pnm_test(&s) || stbi__hdr_test(&s))
        return false;
    return stbi__tga_test(&s) != 0;
}
