/* stb_impl.c: the stb_image and stb_image_resize implementations, compiled
 * from Debian's libstb-dev headers. Only the sanitizer and fuzz builds use
 * this file and stb_write_impl.c (CMake option DDPM_STB_SOURCE, on with
 * DDPM_SANITIZE): there the decoder runs with ASan, UBSan and libFuzzer's
 * coverage like our own code, instead of as the uninstrumented libstb.so
 * that the release build links. The headers and libstb0 come from the same
 * source package, so both builds run the same decoder. Compiled without our
 * warning flags (third-party code).
 */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_RESIZE_IMPLEMENTATION
#include <stb_image.h>
#include <stb_image_resize.h>
