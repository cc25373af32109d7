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
