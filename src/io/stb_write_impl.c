/* stb_write_impl.c: the stb_image_write implementation (libstb-dev's
 * header), compiled into the library like stb_impl.c. Its JPEG writer
 * shifts its bit buffer into the sign bit of an int (UBSan: "left shift of
 * 14090240 by 8 places cannot be represented in type 'int'"), so in the
 * sanitizer builds this file alone goes without UBSan's shift-base check.
 * The library writes only PNGs; the tests also write JPEGs, to test the
 * decoder.
 */
#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb_image_write.h>
